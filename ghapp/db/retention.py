"""Retention: what is old enough is deleted, in bounded batches (no statement deletes more than `batch` rows, so
none holds many locks or a long transaction), with a pause between batches for the rest of the app."""

from __future__ import annotations

import asyncio

import asyncpg

from ghapp.db import locks

BATCH = 1000
PAUSE = 0.05  # seconds between two batches
DELIVERIES_KEPT = 7 * 86400  # delivery ids serve deduplication only: a week, or less if the retention is shorter
RUNS_PER_BATCH = 100

# Finished runs older than the cutoff, oldest first, except the latest run of a live environment (present, or
# with resources): its outcome and log are what the pull request and the dashboard show.
_OLD_RUNS = """
SELECT coalesce(array_agg(id), '{}') FROM (
SELECT r.id FROM runs r
WHERE r.finished_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM environments e
                  WHERE e.id = r.environment_id AND (e.desired = 'present' OR e.provisioned)
                    AND NOT EXISTS (SELECT 1 FROM runs n WHERE n.environment_id = r.environment_id AND n.id > r.id))
ORDER BY r.finished_at LIMIT $2) old
"""
_DELETE_RUN_LOGS = """
DELETE FROM run_logs WHERE (run_id, seq) IN
    (SELECT run_id, seq FROM run_logs WHERE run_id = ANY($1::bigint[]) LIMIT $2)"""
_DELETE_RUNS = "DELETE FROM runs WHERE id = ANY($1::bigint[]) AND state <> 'running'"
# `= ANY(ARRAY(...))`, not `IN (SELECT ...)`: the batch is found through the age index, then each row by its key
# (with IN, PostgreSQL may join the batch against the whole table).
_DELETE_COMMANDS = """
DELETE FROM commands
WHERE id = ANY(ARRAY(SELECT id FROM commands WHERE done_at < now() - make_interval(secs => $1) LIMIT $2))"""
_DELETE_DELIVERIES = """
DELETE FROM deliveries
WHERE id = ANY(ARRAY(SELECT id FROM deliveries WHERE received_at < now() - make_interval(secs => $1) LIMIT $2))"""
# The commits whose source checkouts are kept (prune_sources).
_COMMITS_IN_USE = """
SELECT repo_id, desired_sha AS sha FROM environments WHERE desired_sha IS NOT NULL AND desired = 'present'
UNION SELECT repo_id, deployed_sha FROM environments WHERE deployed_sha IS NOT NULL AND provisioned"""


async def prune(pool: asyncpg.Pool, older_than: float, batch: int = BATCH, pause: float = PAUSE) -> dict[str, int]:
    """Delete runs (with their logs), done commands and deliveries older than `older_than` seconds (deliveries:
    at most a week old); returns how many rows of each went. One replica at a time: while another prunes, this
    one deletes nothing (the next pass does what is left)."""
    deleted = {"run_logs": 0, "runs": 0, "commands": 0, "deliveries": 0}
    async with pool.acquire() as conn:
        if not await locks.try_lock(conn, locks.RETENTION):
            return deleted
        try:
            await _prune(conn, older_than, batch, pause, deleted)
        finally:
            await locks.unlock(conn, locks.RETENTION)
    return deleted


async def _prune(conn: asyncpg.Connection, older_than: float, batch: int, pause: float, deleted: dict) -> None:
    while True:
        run_ids = await conn.fetchval(_OLD_RUNS, older_than, RUNS_PER_BATCH)
        if not run_ids:
            break
        deleted["run_logs"] += await _repeat(conn, _DELETE_RUN_LOGS, run_ids, batch, pause)
        # the logs are gone: the cascade has nothing left to do
        deleted["runs"] += _count(await conn.execute(_DELETE_RUNS, run_ids))
        if len(run_ids) < RUNS_PER_BATCH:
            break
        await asyncio.sleep(pause)
    deleted["commands"] = await _repeat(conn, _DELETE_COMMANDS, older_than, batch, pause)
    deleted["deliveries"] = await _repeat(conn, _DELETE_DELIVERIES, min(older_than, DELIVERIES_KEPT), batch, pause)


async def _repeat(conn: asyncpg.Connection, sql: str, arg: object, batch: int, pause: float) -> int:
    """Run a bounded DELETE (`$2` = batch) until it deletes less than a batch; each its own transaction."""
    total = 0
    while True:
        n = _count(await conn.execute(sql, arg, batch))
        total += n
        if n < batch:
            return total
        await asyncio.sleep(pause)


def _count(status: str) -> int:
    return int(status.split()[-1])


async def commits_in_use(conn: asyncpg.Connection) -> set[tuple[int, str]]:
    """(repository id, SHA) of every commit an environment wants or runs: the source checkouts to keep."""
    rows = await conn.fetch(_COMMITS_IN_USE)
    return {(row["repo_id"], row["sha"]) for row in rows}
