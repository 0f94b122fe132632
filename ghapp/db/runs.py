"""Workers' SQL: claiming an unconverged environment under a lease, runs and their logs, and the outcome."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ghapp.core.contract import Action, RunState, Status
from ghapp.core.model import Environment
from ghapp.db.desired import notify
from ghapp.db.rows import maybe_environment


async def claim(conn: asyncpg.Connection, owner: str, lease_seconds: float) -> Environment | None:
    """Take the lease of one unconverged environment that is due and not leased by a live worker."""
    row = await conn.fetchrow(
        """UPDATE environments SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
           WHERE id = (SELECT id FROM environments
                       WHERE generation > observed_generation AND next_attempt_at <= now()
                         AND (lease_until IS NULL OR lease_until < now())
                       ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        owner,
        lease_seconds,
    )
    return maybe_environment(row)


async def seconds_until_due(conn: asyncpg.Connection) -> float | None:
    """When the next unconverged environment becomes due (retry backoff, settling pushes); None if none waits."""
    return await conn.fetchval(
        """SELECT greatest(0, extract(epoch FROM min(greatest(next_attempt_at, lease_until)) - now()))::float8
           FROM environments WHERE generation > observed_generation AND next_attempt_at IS NOT NULL"""
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
    return await _finish(
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
