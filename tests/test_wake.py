"""Sleep and wake end to end: `ghapp serve` on terraform/local puts an idle preview to sleep (its process stops),
and the wake guard wakes it on a request: held for a client, a page that reloads into the preview for a browser,
503 with Retry-After past the limit, and one apply however many requests and replicas ask.

The gateway (branch `gateway`) is not merged yet, so the guard runs here in a tiny aiohttp application standing in
for it (`front`): it looks the preview up, runs the guard, and then fetches the preview's answer itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from ghapp.db import sleep
from ghapp.gateway.wake import MARKER, RETRY_AFTER
from tests.support import deliver, environment, ready, runs, wait_for
from tests.test_browser import browser, console_errors, page  # noqa: F401 - fixtures
from tests.wake_front import front_app

SLEEP_AFTER = 30.0  # GHAPP_SLEEP_AFTER of the apps under test: the sleeper looks every 1.5 s


@pytest.fixture
async def front(db, database_url) -> AsyncIterator[Callable]:
    """Start stand-in gateways (each its own pool, like replicas); returns their base URLs."""
    servers: list[TestServer] = []
    pools: list[asyncpg.Pool] = []

    async def start(env_id: int, wake_timeout: float = 30.0, own_pool: bool = False) -> str:
        pool = db
        if own_pool:
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
            pools.append(pool)
        server = TestServer(await front_app(pool, env_id, wake_timeout), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/")).rstrip("/")

    yield start
    for server in servers:
        await server.close()
    for pool in pools:
        await pool.close()


async def sleeping_preview(serve, deliveries, db, replicas: int = 1) -> tuple[dict, list]:
    """A preview on terraform/local, deployed, then idle for longer than GHAPP_SLEEP_AFTER (set in the past
    through SQL) and put to sleep by the app's own sleeper."""
    procs = [serve(GHAPP_SLEEP_AFTER=f"{SLEEP_AFTER:g}s") for _ in range(replicas)]
    for proc in procs:
        await wait_for(lambda proc=proc: ready(proc), what="serve ready")
    env_id = (await deliver(procs[0], deliveries, deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: _status(db, env_id, "active"), timeout=60, what="active")
    assert await _answers(env["preview_url"])

    await db.execute(
        """UPDATE environments SET last_activity_at = now() - interval '1 hour',
                                   last_request_at = now() - interval '1 hour' WHERE id = $1""",
        env_id,
    )
    env = await wait_for(lambda: _status(db, env_id, "sleeping"), timeout=60, what="put to sleep by the sleeper")
    assert not await _answers(env["preview_url"]), "the preview's process still answers while asleep"
    assert env["desired_sleeping"] and env["preview_url"]
    return env, procs


async def _status(db, env_id: int, status: str) -> dict | None:
    env = await environment(db, env_id)
    return env if env["status"] == status and env["observed_generation"] == env["generation"] else None


async def _answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _applies(db, env_id: int) -> list[dict]:
    return [r for r in await runs(db, env_id) if r["action"] == "apply"]


async def test_a_request_wakes_a_sleeping_preview_and_is_held_until_it_answers(serve, deliveries, db, front):
    env, (proc,) = await sleeping_preview(serve, deliveries, db)
    applies = len(await _applies(db, env["id"]))
    base = await front(env["id"])

    async with aiohttp.ClientSession() as s, s.get(f"{base}/", headers={"Accept": "*/*"}) as r:
        assert r.status == 200 and MARKER not in r.headers
        assert env["repository"] in await r.text()  # the preview's own page, not ours

    awake = await environment(db, env["id"])
    assert (awake["status"], awake["desired_sleeping"], awake["wake_requested_at"]) == ("active", False, None)
    assert len(await _applies(db, env["id"])) == applies + 1
    async with db.acquire() as conn:  # the wake counts as a request: it does not fall asleep again at once
        assert await sleep.sleep_idle(conn, SLEEP_AFTER) == []
    async with aiohttp.ClientSession() as s, s.get(f"{proc.url}/metrics") as r:
        text = await r.text()
    assert "ghapp_wakeups_total 1.0" in text and "ghapp_wake_latency_seconds_count 1.0" in text


async def test_two_replicas_and_many_requests_wake_a_preview_once(serve, deliveries, db, front):
    env, _procs = await sleeping_preview(serve, deliveries, db, replicas=2)
    applies = len(await _applies(db, env["id"]))
    bases = [await front(env["id"], own_pool=True), await front(env["id"], own_pool=True)]

    async def request(base: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(f"{base}/", headers={"Accept": "application/json"}) as r:
            return r.status, await r.text()

    answers = await asyncio.gather(*(request(bases[i % 2]) for i in range(12)))
    assert all(status == 200 and env["repository"] in text for status, text in answers), answers
    assert len(await _applies(db, env["id"])) == applies + 1, "more than one apply woke the preview"
    assert (await environment(db, env["id"]))["status"] == "active"


async def test_a_request_held_past_the_limit_gets_503_with_retry_after(serve, deliveries, db, front):
    env, _procs = await sleeping_preview(serve, deliveries, db)
    base = await front(env["id"], wake_timeout=0.05)
    async with aiohttp.ClientSession() as s, s.get(f"{base}/api", headers={"Accept": "application/json"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] == str(RETRY_AFTER)
        assert "waking up" in (await r.json())["error"]
    await wait_for(lambda: _status(db, env["id"], "active"), timeout=60, what="awake all the same")
    async with aiohttp.ClientSession() as s, s.get(f"{base}/", headers={"Accept": "*/*"}) as r:
        assert r.status == 200


async def test_a_browser_sees_the_waking_page_then_the_preview(serve, deliveries, db, front, page, console_errors):
    env, _procs = await sleeping_preview(serve, deliveries, db)
    base = await front(env["id"])
    response = await page.goto(f"{base}/")
    assert response is not None and response.status == 503
    await expect(page.get_by_role("heading")).to_have_text(f"Waking up PR #{env['pr_number']}…")
    await expect(page.get_by_text(env["repository"]).first).to_be_visible(timeout=60_000)  # reloaded by itself
    assert (await environment(db, env["id"]))["status"] == "active"
    # expected: the waking page's own status, and the preview's missing favicon (its built-in server has none)
    console_errors[:] = [e for e in console_errors if "status of 503" not in e and "status of 404" not in e]
