"""Retention (issue 9, finding 7): old runs with their logs, done commands and deliveries are deleted in bounded
batches by the expiry loop's pass; what is recent, still running, pending or the latest run of a live environment
is kept."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ghapp import db as ghapp_db
from ghapp.config import Settings
from ghapp.db import locks, retention
from ghapp.workers.periodic import expire_and_prune

DAY = 86400


@pytest.fixture
async def pool(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    await ghapp_db.migrate(pool)
    yield pool
    await pool.close()


async def _env(pool, pr: int, *, live: bool) -> int:
    return await pool.fetchval(
        """INSERT INTO environments (repo_id, repository, pr_number, desired, provisioned, status)
           VALUES (1, 'o/r', $1, $2, $3, $4) RETURNING id""",
        pr,
        "present" if live else "absent",
        live,
        "active" if live else "destroyed",
    )


async def _run(pool, env_id: int, days_ago: float, *, lines: int = 3, running: bool = False) -> int:
    run_id = await pool.fetchval(
        """INSERT INTO runs (environment_id, action, generation, owner, state, started_at, finished_at)
           VALUES ($1, 'apply', 1, 'w', $2, now() - make_interval(secs => $3),
                   CASE WHEN $2 = 'running' THEN NULL ELSE now() - make_interval(secs => $3) END)
           RETURNING id""",
        env_id,
        "running" if running else "succeeded",
        days_ago * DAY,
    )
    await pool.execute(
        "INSERT INTO run_logs (run_id, seq, line) SELECT $1, g, 'line ' || g FROM generate_series(1, $2) g",
        run_id,
        lines,
    )
    return run_id


async def _command(pool, days_ago: float, *, done: bool) -> int:
    return await pool.fetchval(
        """INSERT INTO commands (source, command, installation_id, repo_id, repository, pr_number, author,
                                 created_at, done_at)
           VALUES ('comment', 'deploy', 1, 1, 'o/r', 1, 'a', now() - make_interval(secs => $1),
                   CASE WHEN $2 THEN now() - make_interval(secs => $1) END)
           RETURNING id""",
        days_ago * DAY,
        done,
    )


async def _delivery(pool, name: str, days_ago: float) -> None:
    await pool.execute(
        "INSERT INTO deliveries (id, event, received_at) VALUES ($1, 'push', now() - make_interval(secs => $2))",
        name,
        days_ago * DAY,
    )


async def _ids(pool, table: str) -> set:
    queries = {
        "runs": "SELECT id FROM runs",
        "commands": "SELECT id FROM commands",
        "deliveries": "SELECT id FROM deliveries",
    }
    return {r["id"] for r in await pool.fetch(queries[table])}


async def _count_deletes_per_statement(pool) -> None:
    """Record how many rows each DELETE statement on run_logs, runs, commands, deliveries removed."""
    await pool.execute(
        """CREATE TABLE deleted_per_statement (tbl text, n bigint);
           CREATE FUNCTION count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO deleted_per_statement SELECT TG_TABLE_NAME, count(*) FROM gone;
               RETURN NULL;
           END $$;
           CREATE TRIGGER c1 AFTER DELETE ON run_logs REFERENCING OLD TABLE AS gone
               FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();
           CREATE TRIGGER c2 AFTER DELETE ON runs REFERENCING OLD TABLE AS gone
               FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();
           CREATE TRIGGER c3 AFTER DELETE ON commands REFERENCING OLD TABLE AS gone
               FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();
           CREATE TRIGGER c4 AFTER DELETE ON deliveries REFERENCING OLD TABLE AS gone
               FOR EACH STATEMENT EXECUTE FUNCTION count_deleted();"""
    )


async def test_old_rows_are_deleted_in_batches_and_what_matters_is_kept(pool):
    live = await _env(pool, 1, live=True)
    gone = await _env(pool, 2, live=False)
    busy = await _env(pool, 3, live=True)
    live_old = await _run(pool, live, 45, lines=2500)  # old, not the latest: deleted with its 2,500 lines
    live_latest = await _run(pool, live, 40, lines=10)  # old but the latest of a live environment: kept
    gone_runs = [await _run(pool, gone, 50, lines=700), await _run(pool, gone, 40)]  # all of a destroyed one: gone
    gone_recent = await _run(pool, gone, 1)  # recent: kept (and now the latest)
    busy_old = await _run(pool, busy, 45)
    running = await _run(pool, busy, 40, running=True)  # still running, whatever its age: kept
    old_done, recent_done, old_pending = (
        await _command(pool, 40, done=True),
        await _command(pool, 1, done=True),
        await _command(pool, 40, done=False),
    )
    for name, days in (("d-8", 8), ("d-6", 6), ("d-2", 2)):
        await _delivery(pool, name, days)
    await _count_deletes_per_statement(pool)

    deleted = await retention.prune(pool, 30 * DAY, batch=1000, pause=0)

    assert await _ids(pool, "runs") == {live_latest, gone_recent, running}
    assert {live_old, *gone_runs, busy_old}.isdisjoint(await _ids(pool, "runs"))
    logs = {r["run_id"]: r["n"] for r in await pool.fetch("SELECT run_id, count(*) n FROM run_logs GROUP BY run_id")}
    assert logs == {live_latest: 10, gone_recent: 3, running: 3}
    assert await _ids(pool, "commands") == {recent_done, old_pending}
    assert old_done not in await _ids(pool, "commands")
    assert await _ids(pool, "deliveries") == {"d-6", "d-2"}  # deliveries: a week, as before
    assert deleted == {"run_logs": 2500 + 700 + 3 + 3, "runs": 4, "commands": 1, "deliveries": 1}
    per_statement = await pool.fetch("SELECT tbl, n FROM deleted_per_statement WHERE n > 0")
    assert per_statement and max(r["n"] for r in per_statement) <= 1000, per_statement
    assert sum(r["n"] for r in per_statement if r["tbl"] == "run_logs") == 3206

    # A retention shorter than a week also bounds the deliveries, and the expiry loop's pass applies the setting.
    await expire_and_prune(pool, Settings(retention=3 * DAY))
    assert await _ids(pool, "deliveries") == {"d-2"}
    assert await _ids(pool, "runs") == {live_latest, gone_recent, running}


async def test_commits_in_use_are_those_wanted_or_running(pool):
    """The source checkouts to keep: the desired commit of a present environment, the deployed commit of a
    provisioned one; nothing of a destroyed one."""
    rows = [
        # repo, pr, desired, desired_sha, provisioned, deployed_sha
        (1, 1, "present", "a" * 40, True, "b" * 40),  # deploying a, b still running: both
        (1, 2, "present", "c" * 40, False, None),  # new preview: c
        (2, 3, "absent", "d" * 40, True, "e" * 40),  # being destroyed: e still runs until then
        (2, 4, "absent", "f" * 40, False, "0" * 40),  # destroyed: nothing
    ]
    for repo, pr, wanted, desired_sha, provisioned, deployed_sha in rows:
        await pool.execute(
            """INSERT INTO environments (repo_id, repository, pr_number, desired, desired_sha, provisioned,
               deployed_sha, status) VALUES ($1, $7, $2, $3, $4, $5, $6, 'active')""",
            repo,
            pr,
            wanted,
            desired_sha,
            provisioned,
            deployed_sha,
            f"o/r{repo}",
        )
    async with pool.acquire() as conn:
        assert await retention.commits_in_use(conn) == {(1, "a" * 40), (1, "b" * 40), (1, "c" * 40), (2, "e" * 40)}


async def test_one_replica_prunes_at_a_time(pool):
    """Two replicas pruning the same old runs at once deadlocked (each DELETE of a batch of logs waited for rows the
    other's cascade held); now the second finds the retention lock taken and deletes nothing on that pass."""
    gone = await _env(pool, 2, live=False)
    old = [await _run(pool, gone, 40, lines=20) for _ in range(30)]
    async with pool.acquire() as other_replica:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1, 0)", locks.RETENTION)
        skipped = await retention.prune(pool, 30 * DAY, pause=0)
        await other_replica.execute("SELECT pg_advisory_unlock($1, 0)", locks.RETENTION)
    assert skipped == {"run_logs": 0, "runs": 0, "commands": 0, "deliveries": 0}
    assert set(old) <= await _ids(pool, "runs")

    more = [await _run(pool, gone, 40, lines=20) for _ in range(300)]
    results = await asyncio.gather(*(retention.prune(pool, 30 * DAY, batch=7, pause=0) for _ in range(3)))
    assert sum(r["runs"] for r in results) == len(old) + len(more)  # each run deleted once, by whoever held the lock
    assert await _ids(pool, "runs") == set()
