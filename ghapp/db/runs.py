"""Workers' SQL: claiming an unconverged environment under a lease, runs and their logs, and the outcome."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ghapp.core.contract import NOTIFY_CHANNEL, Action, RunState, Status
from ghapp.core.model import Environment
from ghapp.db import locks
from ghapp.db.desired import notify
from ghapp.db.rows import maybe_environment

# The fair claim (policy.claim_key): among due environments not leased by a live worker, destroys first, then the
# repository with the fewest runs in flight (leases held, on any replica), then the author with the fewest, then
# the longest due. A new preview beyond its repository's cap ($3, or the environment's own max_previews) waits in
# preview_queue (migration 008) and is not claimable.
_CLAIM = """
WITH in_flight AS (
    SELECT repo_id, author FROM environments WHERE lease_owner IS NOT NULL AND lease_until >= now()
), by_repo AS (
    SELECT repo_id, count(*) AS n FROM in_flight GROUP BY repo_id
), by_author AS (
    SELECT author, count(*) AS n FROM in_flight GROUP BY author
), held AS (
    SELECT id FROM preview_queue WHERE live + position > coalesce(max_previews, $3::int)
)
UPDATE environments SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
WHERE id = (SELECT e.id FROM environments e
            LEFT JOIN by_repo r ON r.repo_id = e.repo_id
            LEFT JOIN by_author a ON a.author = e.author
            WHERE e.generation > e.observed_generation AND e.next_attempt_at <= now()
              AND (e.lease_until IS NULL OR e.lease_until < now())
              AND NOT EXISTS (SELECT 1 FROM held h WHERE h.id = e.id)
            ORDER BY e.desired = 'present', coalesce(r.n, 0), coalesce(a.n, 0), e.next_attempt_at, e.id
            LIMIT 1 FOR UPDATE OF e SKIP LOCKED)
RETURNING *
"""


async def claim(
    conn: asyncpg.Connection, owner: str, lease_seconds: float, max_previews: int | None = None
) -> Environment | None:
    """Take the lease of the unconverged environment that is due, not leased by a live worker, and first in fair
    order; `max_previews`: the operator's cap on live previews per repository (None: no cap)."""
    async with conn.transaction():
        # Claims from every replica take turns (each takes a millisecond), so the counts of runs in flight and of
        # live previews each claim sees include the claim before it: the cap holds exactly across replicas.
        await locks.xact_lock(conn, locks.CLAIM)
        row = await conn.fetchrow(_CLAIM, owner, lease_seconds, max_previews)
    return maybe_environment(row)


_DUE = """
SELECT greatest(0, extract(epoch FROM min(greatest(next_attempt_at, lease_until)) - now()))::float8
FROM environments e WHERE generation > observed_generation AND next_attempt_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM preview_queue q
                  WHERE q.id = e.id AND q.live + q.position > coalesce(q.max_previews, $1::int))"""


async def seconds_until_due(conn: asyncpg.Connection, max_previews: int | None = None) -> float | None:
    """When the next unconverged environment becomes due (retry backoff, settling pushes); None if none waits (a
    new preview held by its repository's cap waits for a NOTIFY: a destroy sends one)."""
    return await conn.fetchval(_DUE, max_previews)


async def touch_queue(conn: asyncpg.Connection, repo_id: int) -> None:
    """The line of new previews of a repository moved (one started, or one was destroyed): each waiting one gets a
    new version, so the publisher shows its new place."""
    await conn.execute(
        """UPDATE environments SET updated_at = now()
           WHERE repo_id = $1 AND desired = 'present' AND NOT provisioned AND generation > observed_generation
           RETURNING pg_notify($2, id::text)""",
        repo_id,
        NOTIFY_CHANNEL,
    )


async def renew_lease(conn: asyncpg.Connection, env_id: int, owner: str, lease_seconds: float) -> int | None:
    """Extend our lease; returns the current generation, or None if the lease is no longer ours."""
    return await conn.fetchval(
        """UPDATE environments SET lease_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND lease_owner = $2 RETURNING generation""",
        env_id,
        owner,
        lease_seconds,
    )


async def start_run(conn: asyncpg.Connection, env: Environment, action: Action, owner: str) -> int:
    async with conn.transaction():
        await conn.execute(
            """UPDATE runs SET state = 'abandoned', finished_at = now(), error = 'the worker running it stopped'
               WHERE environment_id = $1 AND state = 'running'""",
            env.id,
        )
        await conn.execute(
            """UPDATE environments SET status = $2, updated_at = now(), provisioned = provisioned OR $3
               WHERE id = $1""",
            env.id,
            str(Status.CREATING if action is Action.APPLY else Status.DESTROYING),
            action is Action.APPLY,
        )
        if action is Action.APPLY and not env.provisioned:
            await touch_queue(conn, env.repo_id)  # a new preview left the line
        sha = env.desired_sha if action is Action.APPLY else env.deployed_sha
        return await conn.fetchval(
            """INSERT INTO runs (environment_id, action, sha, generation, owner) VALUES ($1, $2, $3, $4, $5)
               RETURNING id""",
            env.id,
            str(action),
            sha,
            env.generation,
            owner,
        )


async def append_logs(conn: asyncpg.Connection, run_id: int, first_seq: int, lines: list[tuple[str, str]]) -> None:
    """(line, source) pairs, numbered from `first_seq`; `source` is `terraform` (may be shown on GitHub) or
    `provisioner` (the preview's own output: the dashboard only)."""
    await conn.executemany(
        "INSERT INTO run_logs (run_id, seq, line, source) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [(run_id, first_seq + i, line, source) for i, (line, source) in enumerate(lines)],
    )


async def set_progress(conn: asyncpg.Connection, env_id: int, progress: dict) -> None:
    await conn.execute("UPDATE environments SET progress = $2 WHERE id = $1", env_id, json.dumps(progress))


async def finish_run(
    conn: asyncpg.Connection, run_id: int, state: RunState, exit_code: int | None = None, error: str | None = None
) -> None:
    await conn.execute(
        """UPDATE runs SET state = $2, exit_code = $3, error = $4, finished_at = now()
           WHERE id = $1 AND state = 'running'""",
        run_id,
        str(state),
        exit_code,
        error,
    )


async def mark_active(conn: asyncpg.Connection, env: Environment, owner: str, url: str | None, outputs: dict) -> bool:
    return await _finish(
        conn,
        """UPDATE environments SET status = 'active', deployed_sha = $3, preview_url = $4,
        outputs = $5, observed_generation = greatest(observed_generation, $6), attempts = 0, last_error = NULL,
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        env.desired_sha,
        url,
        json.dumps(outputs),
        env.generation,
    )


async def mark_destroyed(conn: asyncpg.Connection, env: Environment, owner: str) -> bool:
    """Destroyed (or closed before it was ever deployed): the next new preview waiting in line may start."""
    done = await _finish(
        conn,
        """UPDATE environments SET status = 'destroyed', provisioned = false,
        deployed_sha = NULL, preview_url = NULL, outputs = '{}',
        observed_generation = greatest(observed_generation, $3), attempts = 0, last_error = NULL,
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        env.generation,
    )
    if done:
        await touch_queue(conn, env.repo_id)
    return done


async def mark_failed(
    conn: asyncpg.Connection, env: Environment, owner: str, error: str, retry_in: float | None
) -> bool:
    """Failed; retried after `retry_in` seconds, or parked (None) until the desired state changes."""
    return await _finish(
        conn,
        """UPDATE environments SET status = 'failed', last_error = $3,
        attempts = attempts + 1,
        next_attempt_at = CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $4) END,
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        error,
        retry_in,
    )


async def release(conn: asyncpg.Connection, env: Environment, owner: str) -> bool:
    """Give the environment back unconverged (superseded or shutting down): pending, due now."""
    return await _finish(
        conn,
        """UPDATE environments SET status = 'pending',
        next_attempt_at = greatest(next_attempt_at, now()),
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
    )


async def _finish(conn: asyncpg.Connection, sql: str, *args: Any) -> bool:
    status = await conn.execute(sql, *args)
    if status == "UPDATE 1":
        await notify(conn, args[0])
        return True
    return False
