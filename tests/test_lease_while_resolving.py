"""A claim's lease must hold from the claim to the run's end, also while the preview is being resolved (reading
`.github/preview.yml` from GitHub, a commit's archive): found by bench/replicas.py, where GitHub answering slowly
let the lease expire before the run started, so the environment was claimed and applied a second time at once
(on the same or another replica) and was left `creating` with nothing left to do."""

from __future__ import annotations

from tests.support import environment, runs, wait_for
from tests.test_github_app import as_github_app, github, post  # noqa: F401 - fixtures

LEASE = 1.0


async def test_a_slow_configuration_read_keeps_the_lease_and_the_preview_is_applied_once(
    start_app, deliveries, db, github
):
    held = github.hold("repos/get-content")
    client = await as_github_app(start_app, github)(lease_ttl=LEASE, max_parallel_runs=2, poll_interval=0.2)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await held.reached()
    claimed = await environment(db, env_id)
    assert claimed["lease_owner"] is not None

    # GitHub still has not answered three leases after the claim
    later = claimed["lease_until"].timestamp() + 3 * LEASE
    await wait_for(lambda: db.fetchval("SELECT extract(epoch FROM now()) > $1", later), what="three leases later")
    now = await environment(db, env_id)
    assert await runs(db, env_id) == [], "claimed again and applied while the first claim was still resolving"
    assert (now["lease_owner"], now["lease_until"] > claimed["lease_until"]) == (claimed["lease_owner"], True)

    held.release()
    env = await wait_for(lambda: _active(db, env_id), what="active")
    assert [(r["action"], r["state"]) for r in await runs(db, env_id)] == [("apply", "succeeded")]
    assert env["lease_owner"] is None


async def _active(db, env_id: int):
    env = await environment(db, env_id)
    return env if env["status"] == "active" and env["observed_generation"] == env["generation"] else None
