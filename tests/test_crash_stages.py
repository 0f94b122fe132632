"""SIGKILL of `ghapp serve` at each stage of an environment's life, then a restart: every environment converges,
with no duplicate or orphaned preview process and no stuck Terraform lock. And two replicas sharing the work."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.support import deliver, environment, fake_sha, processes_with, ready, runs, wait_for

TRAPPING = "trap '' TERM; exec python3 -m http.server \"$PORT\" --bind 127.0.0.1"  # slow to stop: destroy lasts


@pytest.fixture
def pausing_terraform(tmp_path, terraform_bin):
    """A Terraform that, while the file `pause` exists, holds on for a minute after a successful run (the window
    between Terraform finishing and the database being updated), telling the test through `paused`."""
    wrapper = tmp_path / "terraform-pausing"
    signals = tmp_path / "signals"  # written by Terraform's process: the run user when the tests run as root
    signals.mkdir(mode=0o777)
    signals.chmod(0o777)
    pause, paused = signals / "pause", signals / "paused"
    wrapper.write_text(f"""#!/bin/sh
"{terraform_bin}" "$@"
rc=$?
if [ "$rc" = 0 ] && [ -e "{pause}" ] && [ "$1" = apply ]; then rm -f "{pause}"; touch "{paused}"; sleep 60; fi
exit $rc
""")
    wrapper.chmod(0o755)
    return str(wrapper), pause, paused


def supervisors(data_dir: Path, name: str) -> list[int]:
    return processes_with("preview.py supervise", f"{data_dir}/terraform/local/previews/{name}")


async def converged(db, env_id: int, status: str):
    env = await environment(db, env_id)
    return env if env.get("status") == status and env["observed_generation"] == env["generation"] else None


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


SERVER = 'exec python3 -m http.server "$PORT" --bind 127.0.0.1'


async def test_killed_after_the_webhook_is_stored(serve, deliveries, db):
    first = serve(GHAPP_PUSH_SETTLE="3s", TF_VAR_command=SERVER)
    data_dir = Path(first.env["GHAPP_DATA_DIR"])
    await wait_for(lambda: ready(first), what="serve ready")
    env_id = (await deliver(first, deliveries, deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: converged(db, env_id, "active"), timeout=60, what="active")
    # a push is stored and answered; the workers wait out the settle time, and the app dies meanwhile
    await deliver(first, deliveries, deliveries.pull_request("synchronize", sha=fake_sha("stored")))
    first.kill(signal.SIGKILL)
    row = await environment(db, env_id)
    assert row["desired_sha"] == fake_sha("stored") and row["observed_generation"] < row["generation"]

    second = serve(GHAPP_PUSH_SETTLE="3s", TF_VAR_command=SERVER)
    row = await wait_for(lambda: _deployed(db, env_id, fake_sha("stored")), timeout=60, what="the push deployed")
    assert len(supervisors(data_dir, row["name"])) == 1
    assert await answers(row["preview_url"])
    second.kill(signal.SIGTERM)


async def _deployed(db, env_id, sha):
    row = await converged(db, env_id, "active")
    return row if row and row["deployed_sha"] == sha else None


async def test_killed_between_terraform_finishing_and_the_database_update(
    serve, deliveries, db, pausing_terraform, tmp_path
):
    binary, pause, paused = pausing_terraform
    pause.touch()
    env = {"GHAPP_TERRAFORM_BIN": binary, "TF_VAR_command": SERVER}
    first = serve(**env)
    await wait_for(lambda: ready(first), what="serve ready")
    env_id = (await deliver(first, deliveries, deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _exists(paused), timeout=60, what="terraform finished, database not yet updated")
    row = await environment(db, env_id)
    assert row["status"] == "creating", "the database must not know yet"
    first.kill(signal.SIGKILL)

    second = serve(**env)
    row = await wait_for(lambda: converged(db, env_id, "active"), timeout=60, what="active after the restart")
    assert len(supervisors(Path(second.env["GHAPP_DATA_DIR"]), row["name"])) == 1
    assert await answers(row["preview_url"])
    second.kill(signal.SIGTERM)


async def _exists(path: Path):
    return path.exists()


async def test_killed_during_destroy(serve, deliveries, db):
    first = serve(TF_VAR_command=TRAPPING)
    data_dir = Path(first.env["GHAPP_DATA_DIR"])
    await wait_for(lambda: ready(first), what="serve ready")
    env_id = (await deliver(first, deliveries, deliveries.pull_request("opened")))["environment_id"]
    row = await wait_for(lambda: converged(db, env_id, "active"), timeout=60, what="active")
    await deliver(first, deliveries, deliveries.pull_request("closed"))
    await wait_for(lambda: _status(db, env_id, "destroying"), timeout=30, what="destroy running")
    first.kill(signal.SIGKILL)

    second = serve(TF_VAR_command=TRAPPING)
    await wait_for(lambda: converged(db, env_id, "destroyed"), timeout=90, what="destroyed after the restart")
    assert supervisors(data_dir, row["name"]) == [], "an orphaned preview process was left"
    assert not await answers(row["preview_url"])
    assert [r["state"] for r in await runs(db, env_id)][-1] == "succeeded"
    second.kill(signal.SIGTERM)


async def _status(db, env_id, status):
    return (await environment(db, env_id)).get("status") == status


async def test_two_replicas_share_the_work_and_take_over_from_a_dead_one(serve, deliveries, db):
    slow = 'sleep 2; exec python3 -m http.server "$PORT" --bind 127.0.0.1'
    a = serve(TF_VAR_command=slow, GHAPP_MAX_PARALLEL_RUNS="2")
    b = serve(TF_VAR_command=slow, GHAPP_MAX_PARALLEL_RUNS="2")
    data_dir = Path(a.env["GHAPP_DATA_DIR"])
    await wait_for(lambda: ready(a), what="replica a ready")
    await wait_for(lambda: ready(b), what="replica b ready")
    ids = []
    for n in range(1, 7):
        target = a if n % 2 else b
        ids.append(
            (await deliver(target, deliveries, deliveries.pull_request("opened", number=100 + n)))["environment_id"]
        )
    await wait_for(lambda: _running_owners(db, 2), timeout=30, what="both replicas running Terraform")
    a.kill(signal.SIGKILL)  # mid-run

    for env_id in ids:
        row = await wait_for(lambda: converged(db, env_id, "active"), timeout=120, what=f"environment {env_id}")
        assert len(supervisors(data_dir, row["name"])) == 1, "a duplicate preview process"
    all_runs = [dict(r) for r in await db.fetch("SELECT * FROM runs ORDER BY id")]
    assert len({r["owner"] for r in all_runs}) == 2, "both replicas ran Terraform"
    for env_id in ids:  # never two runs of one environment at once
        spans = sorted((r["started_at"], r["finished_at"]) for r in all_runs if r["environment_id"] == env_id)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and end <= start, f"overlapping runs on environment {env_id}"
    b.kill(signal.SIGTERM)


async def _running_owners(db, n):
    owners = await db.fetch("SELECT DISTINCT owner FROM runs WHERE state = 'running'")
    return len(owners) >= n
