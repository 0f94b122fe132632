"""Sleep and wake as desired state: the pure rules, the idle sleeper (one statement, idle time set in the past
through SQL), wake once however many ask, the reconciler's outcome (`sleeping`), a push waking a sleeping preview,
the commands, the dashboard and API writes, and the metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from aiohttp.test_utils import make_mocked_request

from ghapp.config import ConfigError, Settings
from ghapp.core.commands import parse_command
from ghapp.core.contract import Desired, Status
from ghapp.core.policy import (
    asleep,
    idle_since,
    may_run,
    should_sleep,
    sleep_after,
    status_after_apply,
    stays_asleep,
    waking,
    wants_page,
)
from ghapp.db import reads, sleep
from ghapp.gateway import wake
from tests.support import environment, fake_sha, runs, wait_for
from tests.test_dashboard import TOKEN, seed, sign_in
from tests.test_github_app import (  # noqa: F401 - fixtures
    REPO,
    _active_published,
    _reply_from_bot,
    as_github_app,
    comment_on_pr,
    github,
    post,
    published,
)
from tests.test_policy import environment as env_of

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
HOUR = 3600.0


def active(**fields):
    values = {"desired": Desired.PRESENT, "status": Status.ACTIVE, "last_activity_at": NOW - dt.timedelta(hours=2)}
    return env_of(**{**values, **fields})


# --- the rules (pure) ------------------------------------------------------------------------------------------------


@pytest.mark.fast
def test_an_active_preview_sleeps_after_its_sleep_after_without_a_request():
    assert should_sleep(active(), HOUR, NOW)
    assert not should_sleep(active(last_request_at=NOW - dt.timedelta(minutes=59)), HOUR, NOW)
    assert should_sleep(active(last_request_at=NOW - dt.timedelta(minutes=61)), HOUR, NOW)
    # a push (or deploy request) counts as activity: a preview never requested is idle since then
    assert not should_sleep(active(last_activity_at=NOW - dt.timedelta(minutes=5)), HOUR, NOW)
    assert idle_since(active(last_request_at=NOW - dt.timedelta(hours=5))) == NOW - dt.timedelta(hours=2)


@pytest.mark.fast
def test_the_configuration_overrides_the_operator_default_and_none_means_never():
    assert sleep_after(HOUR) == HOUR and sleep_after(HOUR, 60.0) == 60.0 and sleep_after(None, 60.0) == 60.0
    assert sleep_after(None) is None
    assert not should_sleep(active(), None, NOW)
    assert should_sleep(active(sleep_after=60.0), None, NOW)
    assert not should_sleep(active(sleep_after=3 * HOUR), HOUR, NOW)


@pytest.mark.fast
@pytest.mark.parametrize(
    "fields",
    [
        {"status": Status.CREATING},
        {"status": Status.SLEEPING},
        {"desired_sleeping": True},
        {"desired": Desired.ABSENT},
        {"generation": 2, "observed_generation": 1},  # something else is under way
    ],
)
def test_only_converged_awake_active_previews_are_put_to_sleep(fields):
    assert not should_sleep(active(**fields), HOUR, NOW)


@pytest.mark.fast
def test_a_new_commit_wakes_and_a_sleeping_apply_ends_sleeping():
    assert stays_asleep(True, new_commit=False) and not stays_asleep(True, new_commit=True)
    assert not stays_asleep(False, new_commit=False)
    assert status_after_apply(True) is Status.SLEEPING and status_after_apply(False) is Status.ACTIVE


@pytest.mark.fast
def test_which_previews_a_request_wakes_or_waits_for():
    assert asleep(active(status=Status.SLEEPING, desired_sleeping=True))
    assert asleep(active(desired_sleeping=True))  # going to sleep: a request wakes it again
    assert not asleep(active()) and not asleep(active(status=Status.SLEEPING, desired=Desired.ABSENT))
    woken = active(status=Status.CREATING, wake_requested_at=NOW)
    assert waking(woken) and waking(active(status=Status.SLEEPING)) and not waking(active(wake_requested_at=NOW))
    assert not waking(active(status=Status.CREATING))  # a push's deploy: the gateway's own page
    assert wants_page("text/html,application/xhtml+xml,*/*;q=0.8") and not wants_page("*/*")
    assert not wants_page("") and not wants_page("application/json")


@pytest.mark.fast
def test_sleep_and_wake_are_allowed_to_whoever_may_redeploy():
    for command in ("sleep", "wake"):
        assert parse_command(f"/preview {command}").command == command
        assert may_run(command, "write", "bob", "alice", fork=False)
        assert may_run(command, "read", "alice", "alice", fork=False)  # the author of a same-repository PR
        assert not may_run(command, "read", "alice", "alice", fork=True)
        assert not may_run(command, "read", "bob", "alice", fork=False)


@pytest.mark.fast
def test_sleep_settings():
    assert Settings.from_env({}, dotenv=None).sleep_after == HOUR
    assert Settings.from_env({"GHAPP_SLEEP_AFTER": "30m"}, dotenv=None).sleep_after == 1800
    assert Settings.from_env({"GHAPP_SLEEP_AFTER": "never"}, dotenv=None).sleep_after is None
    assert Settings.from_env({"GHAPP_WAKE_TIMEOUT": "5s"}, dotenv=None).wake_timeout == 5
    for bad in ({"GHAPP_SLEEP_AFTER": "soon"}, {"GHAPP_SLEEP_AFTER": "0"}, {"GHAPP_WAKE_TIMEOUT": "0"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Settings.from_env(bad, dotenv=None)


@pytest.mark.fast
def test_the_waking_page_shows_nothing_the_pull_request_wrote_and_runs_only_its_own_script():
    env = active(status=Status.SLEEPING, title="<script>alert(1)</script>", head_ref="<img src=x>", pr_number=12)
    page = wake.waking_page(env)
    body = page.text or ""
    assert page.status == 503 and page.headers["Retry-After"] == str(wake.RETRY_AFTER)
    assert "Waking up PR #12…" in body and "alert(1)" not in body and "<img" not in body
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert body.count("<script") == 1 and f'<script nonce="{nonce}">' in body
    assert wake.waking_page(env).headers["Content-Security-Policy"] != page.headers["Content-Security-Policy"]


# --- the database: sleeper and wake ----------------------------------------------------------------------------------


async def _idle(db, env_id: int, seconds: float) -> None:
    """The preview had its last push and its last request `seconds` ago (no waiting in the test)."""
    await db.execute(
        """UPDATE environments SET last_activity_at = now() - make_interval(secs => $2),
                                   last_request_at = now() - make_interval(secs => $2) WHERE id = $1""",
        env_id,
        seconds,
    )


async def test_the_sleeper_puts_idle_previews_to_sleep_in_one_statement(start_app, db):
    await start_app(workers=False)
    idle, busy, own, never_requested, going, destroyed = await seed(db, 6)
    for env_id in (idle, own, never_requested, going, destroyed):
        await _idle(db, env_id, 2 * HOUR)
    await db.execute("UPDATE environments SET last_request_at = NULL WHERE id = $1", never_requested)
    await db.execute("UPDATE environments SET sleep_after = 3 * 3600 WHERE id = $1", own)
    await db.execute("UPDATE environments SET desired_sleeping = true WHERE id = $1", going)
    await db.execute("UPDATE environments SET status = 'destroyed', desired = 'absent' WHERE id = $1", destroyed)
    before = {r["id"]: r["generation"] for r in await db.fetch("SELECT id, generation FROM environments")}

    async with db.acquire() as conn:
        assert sorted(await sleep.sleep_idle(conn, HOUR)) == [idle, never_requested]
        assert await sleep.sleep_idle(conn, HOUR) == []  # asleep already: nothing twice
        await conn.execute("SET enable_seqscan = off")  # a table of six rows would be scanned whatever the index
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sleep._SLEEP_IDLE, HOUR, "ghapp_environments"))
        await conn.execute("RESET enable_seqscan")
    assert "environments_awake" in plan, plan  # it reads the awake active previews only, not every environment
    rows = {r["id"]: r for r in await db.fetch("SELECT * FROM environments")}
    for env_id in (idle, never_requested):
        assert rows[env_id]["desired_sleeping"] and rows[env_id]["generation"] == before[env_id] + 1
        assert rows[env_id]["status"] == "active"  # until the apply with sleeping = true says otherwise
    for env_id in (busy, own, destroyed):
        assert not rows[env_id]["desired_sleeping"] and rows[env_id]["generation"] == before[env_id]
    async with db.acquire() as conn:
        assert await sleep.sleep_idle(conn, None) == []  # GHAPP_SLEEP_AFTER=never: only configured ones
        await _idle(db, own, 4 * HOUR)
        assert await sleep.sleep_idle(conn, None) == [own]


async def test_many_concurrent_wakes_bump_the_generation_once(start_app, db):
    await start_app(workers=False)
    (env_id,) = await seed(db)
    await db.execute("UPDATE environments SET desired_sleeping = true, status = 'sleeping' WHERE id = $1", env_id)
    generation = await db.fetchval("SELECT generation FROM environments WHERE id = $1", env_id)

    async def one() -> bool:
        async with db.acquire() as conn:
            return (await sleep.request_wake(conn, env_id))[0]

    woke = await asyncio.gather(*(one() for _ in range(20)))
    assert woke.count(True) == 1
    env = await environment(db, env_id)
    assert env["generation"] == generation + 1 and not env["desired_sleeping"]
    assert env["wake_requested_at"] is not None and env["last_request_at"] >= env["wake_requested_at"]
    async with db.acquire() as conn:
        assert await sleep.request_sleep(conn, env_id)
        assert not await sleep.request_sleep(conn, env_id)
        assert (await environment(db, env_id))["wake_requested_at"] is None


# --- the reconciler, the pull request and the metrics (scripted module, fake GitHub) -------------------------------


@pytest.fixture
def github_app(start_app, github):
    return as_github_app(start_app, github)


async def test_a_preview_put_to_sleep_is_sleeping_on_the_pr_and_a_push_wakes_it(github_app, deliveries, db, github):
    client = await github_app(admin_token=TOKEN)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: _active_published(db, env_id), what="active")
    applies = len(await runs(db, env_id))
    await _idle(db, env_id, 2 * HOUR)
    async with db.acquire() as conn:
        assert await sleep.sleep_idle(conn, HOUR) == [env_id]

    await wait_for(lambda: _status_published(db, env_id, "sleeping"), what="sleeping and published")
    assert len(await runs(db, env_id)) == applies + 1
    check = [r for r in github.check_runs(REPO) if r["head_sha"] == env["desired_sha"]][-1]
    assert (check["conclusion"], check["output"]["title"]) == ("success", "Asleep")
    (comment,) = [c for c in github.comments(REPO, 2) if c["body"].startswith("<!-- ghapp:preview -->")]
    assert "💤 sleeping" in comment["body"]
    body = await (await client.get(f"/api/environments/{env_id}")).json()
    assert body["status"] == "sleeping" and body["sleeping"] is True
    assert 'ghapp_environments{status="sleeping"} 1.0' in await (await client.get("/metrics")).text()
    listing = await (await client.get("/", params={"status": "sleeping"})).text()
    assert "☾" in listing

    # a push to a sleeping preview wakes it at the new commit
    new = fake_sha("push")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=new))
    awake = await wait_for(lambda: _active_published(db, env_id), what="woken by the push")
    assert awake["deployed_sha"] == new and not awake["desired_sleeping"]


async def _status_published(db, env_id: int, status: str):
    env = await published(db, env_id)
    return env if env and env["status"] == status else None


async def test_sleep_and_wake_commands(github_app, deliveries, db, github):
    client = await github_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    assert (await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview sleep")))[
        "command"
    ] == "sleep"
    await wait_for(lambda: _status_published(db, env_id, "sleeping"), what="asleep by the command")
    await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview wake"))
    env = await wait_for(lambda: _active_published(db, env_id), what="awake by the command")
    assert env["wake_requested_at"] is None
    done = await db.fetch("SELECT command, outcome FROM commands ORDER BY id")
    assert [(c["command"], c["outcome"]) for c in done] == [("sleep", "sleep requested"), ("wake", "wake requested")]

    github.set_permission(REPO, "passerby", "read")
    refused = comment_on_pr(deliveries, "/preview sleep", user="passerby", association="NONE")
    await post(client, deliveries, "issue_comment", refused)
    reply = await wait_for(lambda: _reply_from_bot(github, "Sorry @passerby"), what="a polite refusal")
    assert "/preview sleep" in reply["body"]
    assert not (await environment(db, env_id))["desired_sleeping"]


async def test_dashboard_and_api_sleep_and_wake(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.post(f"/api/environments/{env_id}/sleep")).status == 401
    resp = await client.post(f"/api/environments/{env_id}/sleep", headers=bearer)
    assert resp.status == 202 and (await resp.json())["sleeping"] is True
    assert (await client.post(f"/api/environments/{env_id}/sleep", headers=bearer)).status == 409
    resp = await client.post(f"/api/environments/{env_id}/wake", headers=bearer)
    assert resp.status == 202 and (await resp.json())["sleeping"] is False
    assert (await client.post(f"/api/environments/{env_id}/wake", headers=bearer)).status == 409

    csrf = await sign_in(client)
    page = await (await client.get("/")).text()
    assert f'formaction="/environments/{env_id}/sleep"' in page and f"/environments/{env_id}/wake" not in page
    resp = await client.post(
        f"/environments/{env_id}/sleep",
        data={"csrf_token": csrf, "confirmed": "yes", "next": "/"},
        allow_redirects=False,
    )
    assert resp.status == 303 and (await environment(db, env_id))["desired_sleeping"]
    page = await (await client.get(f"/environments/{env_id}")).text()
    assert f'formaction="/environments/{env_id}/wake"' in page


@pytest.mark.fast
def test_metrics_count_wakes_and_their_latency():
    from ghapp.web.metrics import Metrics

    metrics = Metrics()
    metrics.woken(1.5)
    metrics.woken(0.4)
    samples = {s.name + str(s.labels): s.value for m in metrics.registry.collect() for s in m.samples}
    assert samples["ghapp_wakeups_total{}"] == 2
    assert samples["ghapp_wake_latency_seconds_count{}"] == 2
    assert samples["ghapp_wake_latency_seconds_bucket{'le': '2.0'}"] == 2
    assert samples["ghapp_wake_latency_seconds_bucket{'le': '1.0'}"] == 1


# --- the wake guard's answers (no workers: the preview never finishes waking here) --------------------------------


async def test_the_wake_guard_answers_by_client_and_lets_the_woken_preview_through(start_app, db):
    await start_app(workers=False)
    (env_id,) = await seed(db)
    waker = wake.Waker(db, Settings(wake_timeout=0.05))
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}

    async def current():
        async with db.acquire() as conn:
            return await reads.get_environment(conn, env_id)

    try:
        assert await waker(make_mocked_request("GET", "/", headers=browser), await current()) is None  # awake
        async with db.acquire() as conn:
            await sleep.request_sleep(conn, env_id)
        await db.execute(
            "UPDATE environments SET status = 'sleeping', observed_generation = generation WHERE id = $1", env_id
        )
        asleep_env = await current()
        generation = asleep_env.generation

        page = await waker(make_mocked_request("GET", "/", headers=browser), asleep_env)
        assert page.status == 503 and page.headers[wake.MARKER] == "waking" and "Waking up PR #" in page.text
        poll = await waker(make_mocked_request("GET", "/", headers={"Accept": wake.STATUS_TYPE}), asleep_env)
        assert poll.status == 200 and json.loads(poll.text) == {
            "status": "sleeping",
            "text": wake.status_text(asleep_env),
            "ready": False,
        }
        held = await waker(make_mocked_request("GET", "/x", headers={"Accept": "*/*"}), asleep_env)
        assert held.status == 503 and held.headers["Retry-After"] == str(wake.RETRY_AFTER)
        assert (await current()).generation == generation + 1, "three requests, one wake"

        await db.execute(
            "UPDATE environments SET status = 'active', observed_generation = generation WHERE id = $1", env_id
        )
        seen = []
        waker.fresh = lambda _request, env: seen.append(env.status)
        # the gateway's cache may still say sleeping: the poll goes on to the preview as it is now
        assert await waker(make_mocked_request("GET", "/", headers={"Accept": wake.STATUS_TYPE}), asleep_env) is None
        assert seen == ["active"]
    finally:
        await waker.close()
