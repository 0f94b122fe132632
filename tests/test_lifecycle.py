"""Lifecycle: the TTL reaper, run timeouts, and the resync of open pull requests against the fake GitHub."""

from __future__ import annotations

import aiohttp
import pytest

from ghapp.github.client import GitHubApp
from ghapp.workers.periodic import Resync
from tests.support import environment, fake_sha, runs, wait_for
from tests.test_github_app import INSTALLATION, REPO, REPO_ID, SHA


async def post(client, deliveries, event, data):
    body, headers = deliveries.signed(event, data)
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status in (200, 202), await resp.text()
    return await resp.json()


async def state(db, env_id, status):
    env = await environment(db, env_id)
    return env if env.get("status") == status and env["observed_generation"] == env["generation"] else None


async def test_ttl_destroys_an_idle_environment_and_a_push_brings_it_back(start_app, deliveries, db):
    client = await start_app(env_ttl=3.0)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    active = await wait_for(lambda: state(db, env_id, "active"), what="active")
    assert active["expires_at"] is not None and active["expired_at"] is None

    env = await wait_for(lambda: state(db, env_id, "destroyed"), timeout=20, what="destroyed after the TTL")
    assert env["expired_at"] is not None and env["desired"] == "absent"
    assert [r["action"] for r in await runs(db, env_id)] == ["apply", "destroy"]

    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fake_sha("back")))
    env = await wait_for(lambda: state(db, env_id, "active"), what="active again after a push")
    assert env["expired_at"] is None and env["deployed_sha"] == fake_sha("back")


async def test_each_push_renews_the_ttl(start_app, deliveries, db):
    client = await start_app(env_ttl=3600.0)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    first = (await environment(db, env_id))["expires_at"]
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fake_sha(1)))
    assert (await environment(db, env_id))["expires_at"] > first


async def test_run_timeout_interrupts_fails_and_retries_up_to_the_limit(start_app, deliveries, db, settings):
    client = await start_app(run_timeout=1.5, max_attempts=2, terraform_env={"TF_VAR_delay": "30"})
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]

    async def parked():
        env = await environment(db, env_id)
        return env if env["attempts"] == 2 and env["next_attempt_at"] is None else None

    env = await wait_for(parked, timeout=40, what="two timed-out attempts, then no more retries")
    assert env["status"] == "failed" and "timed out after" in env["last_error"]
    assert [(r["state"], r["error"][:9]) for r in await runs(db, env_id)] == [("failed", "timed out")] * 2
    from tests.support import processes_with

    assert processes_with(str(settings.data_dir), "apply") == []


# --- resync ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def online(settings, fake_github):
    fake_github.add_repo(REPO, REPO_ID)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="Codertocat")
    return settings.replace(
        app_id=str(fake_github.app_id), private_key=fake_github.private_key_pem, github_api_url=fake_github.base_url
    )


@pytest.fixture
async def resync(online, db, fake_github):
    async with aiohttp.ClientSession() as session:
        yield Resync(db, GitHubApp(session, online.app_id, online.private_key, online.github_api_url), online)


async def test_resync_destroys_environments_of_prs_closed_while_events_were_lost(
    start_app, online, deliveries, db, fake_github, resync
):
    client = await start_app(**vars_of(online))
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: state(db, env_id, "active"), what="active")

    assert (await resync.once())["closed"] == 0, "an open PR is left alone"
    fake_github.pulls[(REPO.lower(), 2)].state = "closed"  # the `closed` delivery never arrived
    assert (await resync.once())["closed"] == 1
    await wait_for(lambda: state(db, env_id, "destroyed"), what="destroyed by the resync")


async def test_resync_never_marks_absent_on_errors(start_app, online, deliveries, db, fake_github, resync):
    client = await start_app(**vars_of(online))
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: state(db, env_id, "active"), what="active")
    fake_github.pulls[(REPO.lower(), 2)].state = "closed"

    fake_github.fail("pulls/list", 500, times=10)
    assert (await resync.once())["errors"] == 1
    fake_github.fail("pulls/get", 502, times=10)  # the listing works, the confirmation does not
    assert (await resync.once())["closed"] == 0
    await fake_github.down()
    assert (await resync.once())["errors"] == 1
    await fake_github.up()
    env = await environment(db, env_id)
    assert (env["desired"], env["status"]) == ("present", "active")


async def test_resync_catches_a_missed_push(start_app, online, deliveries, db, fake_github, resync):
    client = await start_app(**vars_of(online))
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: state(db, env_id, "active"), what="active")
    fake_github.pulls[(REPO.lower(), 2)].head_sha = fake_sha("missed")
    assert (await resync.once())["updated"] == 1
    env = await wait_for(lambda: state(db, env_id, "active"), what="the missed push deployed")
    assert env["deployed_sha"] == fake_sha("missed")


async def test_resync_catches_missed_labels_and_draft_without_a_push(
    start_app, online, deliveries, db, fake_github, resync
):
    client = await start_app(**vars_of(online))
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    before = await wait_for(lambda: state(db, env_id, "active"), what="active")
    assert (await resync.once())["updated"] == 0, "nothing missed: nothing written"
    pull = fake_github.pulls[(REPO.lower(), 2)]
    pull.labels, pull.draft = ["bug", "no-preview"], True  # the `labeled` and `converted_to_draft` never arrived
    assert (await resync.once())["updated"] == 1
    env = await environment(db, env_id)
    assert (env["labels"], env["draft"]) == (["bug", "no-preview"], True)
    assert (env["desired_sha"], env["expires_at"]) == (before["desired_sha"], before["expires_at"]), "not a push"
    assert (await resync.once())["updated"] == 0


def vars_of(settings) -> dict:
    return {k: getattr(settings, k) for k in ("app_id", "private_key", "github_api_url")}
