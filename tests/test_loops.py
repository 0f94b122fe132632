"""The one background-loop helper (ghapp/workers/loops.py): woken across connections by NOTIFY, restarted with
backoff after a failure, and ended by cancellation whatever it is doing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ghapp.workers.loops import Wake, run_loop


async def _until(check, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_loop_ends_when_cancelled_just_as_it_is_woken():
    """Shutdown wakes the loops and cancels them in the same moment; the cancellation must not be lost (on Python
    3.11, asyncio.wait_for loses it and the loop, and so the app's shutdown, hung)."""
    wake = Wake()
    passes = []

    async def work() -> float | None:
        passes.append(1)
        return None

    task = asyncio.create_task(run_loop("test", work, poll=3600, wake=wake))
    await _until(lambda: passes, "the first pass")
    for _ in range(3):
        await asyncio.sleep(0)  # now waiting to be woken
    wake.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task


async def test_a_failing_pass_is_retried_and_the_loop_goes_on(caplog):
    passes = []

    async def work() -> float | None:
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("boom")
        return None

    task = asyncio.create_task(run_loop("flaky", work, poll=3600))
    await _until(lambda: len(passes) >= 2, "the pass after the failure")  # first backoff is 1 s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert "flaky crashed; restarting it" in caplog.text


async def test_a_pass_that_wants_to_run_again_at_once_does(caplog):
    wanted = iter([0, 0, None])
    passes = []

    async def work() -> float | None:
        passes.append(1)
        return next(wanted)

    task = asyncio.create_task(run_loop("busy", work, poll=3600))
    await _until(lambda: len(passes) == 3, "three passes without waiting")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_notify_from_another_connection_wakes_the_loop(database_url):
    passes = []
    payloads: list[str] = []

    async def work() -> float | None:
        passes.append(1)
        return None

    wake = Wake(database_url, "ghapp_test_channel", payloads.append)
    task = asyncio.create_task(run_loop("listener", work, poll=3600, wake=wake))
    await _until(lambda: len(passes) >= 2, "the pass after LISTEN connected")  # a (re)connection wakes it once
    before = len(passes)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_notify('ghapp_test_channel', '42')")
    finally:
        await conn.close()
    await _until(lambda: len(passes) > before, "the pass after NOTIFY")
    assert payloads == ["42"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_with_nothing_due_the_loops_sleep_until_woken(db):
    """With no unconverged environment and no pending command, the reconciler's and the command processor's "next
    due" are None (sleep until a NOTIFY or the slow poll), not 0. GREATEST(0, NULL) is 0 in PostgreSQL: both loops
    ran a pass every 10 ms on an idle replica (~270 commits/s, a fifth of a core), found by profiling the gateway."""
    from ghapp import db as ghapp_db
    from ghapp.db import commands, runs

    await ghapp_db.migrate(db)
    async with db.acquire() as conn:
        assert await runs.seconds_until_due(conn) is None
        assert await commands.next_due(conn) is None
