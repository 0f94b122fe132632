"""Workers' SQL: claiming an unconverged environment under a lease, runs and their logs, and the outcome."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg

from ghapp.core.contract import NOTIFY_CHANNEL, Action, RunState, Status
from ghapp.core.model import Environment
from ghapp.core.policy import status_after_apply
from ghapp.core.repoconfig import Held, Plan
from ghapp.db import locks
from ghapp.db.desired import notify
from ghapp.db.rows import maybe_environment, seconds_due

# The fair claim (policy.claim_key): among due environments not leased by a live worker, destroys first, then the
# repository with the fewest runs in flight (leases held, on any replica), then the author with the fewest, then
# the longest due. A new preview beyond its repository's cap (the lower of $3 and the environment's own
# max_previews) waits in preview_queue (migration 008) and is not claimable.
_CLAIM = """
WITH in_flight AS (
    SELECT repo_id, author FROM environments WHERE lease_owner IS NOT NULL AND lease_until >= now()
), by_repo AS (
    SELECT repo_id, count(*) AS n FROM in_flight GROUP BY repo_id
), by_author AS (
    SELECT author, count(*) AS n FROM in_flight GROUP BY author
), held AS (
    SELECT id FROM preview_queue WHERE live + position > least(max_previews, $3::int)
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
SELECT extract(epoch FROM min(greatest(next_attempt_at, lease_until)) - now())::float8
FROM environments e WHERE generation > observed_generation AND next_attempt_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM preview_queue q
                  WHERE q.id = e.id AND q.live + q.position > least(q.max_previews, $1::int))"""


async def seconds_until_due(conn: asyncpg.Connection, max_previews: int | None = None) -> float | None:
    """When the next unconverged environment becomes due (retry backoff, settling pushes); None if none waits (a
    new preview held by its repository's cap waits for a NOTIFY: a destroy sends one)."""
    return seconds_due(await conn.fetchval(_DUE, max_previews))


# SKIP LOCKED: a waiting preview locked by another transaction is being started or touched by it (and gets a new
# version from it). Waiting for it instead deadlocked: two new previews of one repository starting at once each
# held its own row and wanted the other's (seen with 10,000 waiting: bench/scale.py "all delivered").
_TOUCH_QUEUE = """
UPDATE environments SET updated_at = now()
WHERE id IN (SELECT id FROM environments
             WHERE repo_id = $1 AND desired = 'present' AND NOT provisioned AND generation > observed_generation
             FOR UPDATE SKIP LOCKED)
RETURNING pg_notify($2, id::text)"""


async def touch_queue(conn: asyncpg.Connection, repo_id: int) -> None:
    """The line of new previews of a repository moved (one started, or one was destroyed): each waiting one gets a
    new version, so the publisher shows its new place."""
    await conn.execute(_TOUCH_QUEUE, repo_id, NOTIFY_CHANNEL)


async def renew_lease(conn: asyncpg.Connection, env_id: int, owner: str, lease_seconds: float) -> int | None:
    """Extend our lease; returns the current generation, or None if the lease is no longer ours."""
    return await conn.fetchval(
        """UPDATE environments SET lease_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND lease_owner = $2 RETURNING generation""",
        env_id,
        owner,
        lease_seconds,
    )


def _config_json(held_or_plan: Held | Plan) -> str | None:
    config = held_or_plan.config
    return None if config is None else json.dumps(dataclasses.asdict(config), default=str)


async def start_run(
    conn: asyncpg.Connection,
    env: Environment,
    action: Action,
    owner: str,
    plan: Plan | None = None,
    *,
    ttl_seconds: float,
    lease_seconds: float,
) -> int | None:
    """A run starts, if `owner` still holds the environment's lease (renewed here for `lease_seconds`); None if
    the lease was lost meanwhile: someone else may be running it. An apply records the configuration it was resolved
    with (and clears any hold), and its expiry follows the configuration's `ttl` (else the operator's `ttl_seconds`)
    from the last activity."""
    async with conn.transaction():
        if await renew_lease(conn, env.id, owner, lease_seconds) is None:
            return None
        if plan is not None:
            await conn.execute(
                """UPDATE environments SET hold = NULL, hold_reason = NULL, config = $2, config_source = $3,
                   config_blob_sha = $4, access = $5, sleep_after = $6, max_previews = $7, ttl = $8, module = $10,
                   expires_at = preview_expiry(last_activity_at, coalesce($8::float8, $9::float8), keep),
                   expiry_warned_at = CASE WHEN expires_at IS NOT DISTINCT FROM
                                                preview_expiry(last_activity_at, coalesce($8::float8, $9::float8), keep)
                                           THEN expiry_warned_at END  -- a new expiry: a new reminder
                   WHERE id = $1""",
                env.id,
                _config_json(plan),
                plan.origin.describe(),
                plan.origin.blob_sha,
                None if plan.config.access is None else str(plan.config.access),
                plan.config.sleep_after,
                plan.config.max_previews,
                plan.config.ttl,
                ttl_seconds,
                plan.module,
            )
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
            """INSERT INTO runs (environment_id, action, sha, generation, owner, config_source, config_blob_sha)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            env.id,
            str(action),
            sha,
            env.generation,
            owner,
            plan.origin.describe() if plan else None,
            plan.origin.blob_sha if plan else None,
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


async def mark_active(
    conn: asyncpg.Connection, env: Environment, owner: str, url: str | None, outputs: dict
) -> float | None:
    """Applied: `active`, or `sleeping` when applied with `sleeping = true` (policy.status_after_apply). Returns
    the wake latency (seconds since the wake was asked for) when this apply woke the preview, else None."""
    woke = not env.desired_sleeping and env.wake_requested_at is not None
    latency = await conn.fetchval(
        """UPDATE environments SET status = $7, deployed_sha = $3, preview_url = $4,
        outputs = $5, observed_generation = greatest(observed_generation, $6), attempts = 0, last_error = NULL,
        wake_requested_at = CASE WHEN $8 THEN NULL ELSE wake_requested_at END,
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2
        RETURNING CASE WHEN $8 THEN extract(epoch FROM now() - $9::timestamptz)::float8 ELSE -1 END""",
        env.id,
        owner,
        env.desired_sha,
        url,
        json.dumps(outputs),
        env.generation,
        str(status_after_apply(env.desired_sleeping)),
        woke,
        env.wake_requested_at,
    )
    if latency is None:  # the lease was lost: whoever holds it now records the outcome
        return None
    await notify(conn, env.id)
    return latency if latency >= 0 else None


async def mark_destroyed(conn: asyncpg.Connection, env: Environment, owner: str, held: Held | None = None) -> bool:
    """Destroyed (or closed before it was ever deployed; or because a rule says no preview: `held`): the next new
    preview waiting in line may start."""
    done = await _finish(
        conn,
        """UPDATE environments SET status = 'destroyed', provisioned = false, hold = $4, hold_reason = $5,
        deployed_sha = NULL, preview_url = NULL, outputs = '{}',
        observed_generation = greatest(observed_generation, $3), attempts = 0, last_error = NULL,
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        env.generation,
        None if held is None else str(held.hold),
        None if held is None else held.reason,
    )
    if done:
        await touch_queue(conn, env.repo_id)
    return done


async def mark_held(conn: asyncpg.Connection, env: Environment, owner: str, held: Held) -> bool:
    """Converged without a run: the preview is held back (`held.hold`, `held.reason`). What exists stays as it is:
    an existing preview stays active; a new one is pending (failed, when the configuration is invalid)."""
    return await _finish(
        conn,
        """UPDATE environments SET hold = $3, hold_reason = $4, config = coalesce($5, config),
        config_source = $6, config_blob_sha = $7,
        status = CASE WHEN provisioned AND deployed_sha IS NOT NULL AND status = 'sleeping' THEN 'sleeping'
                      WHEN provisioned AND deployed_sha IS NOT NULL THEN 'active'
                      WHEN provisioned THEN status
                      WHEN $3 = 'invalid' THEN 'failed' ELSE 'pending' END,
        observed_generation = greatest(observed_generation, $8), attempts = 0,
        last_error = CASE WHEN $3 = 'invalid' THEN $4 ELSE NULL END,
        lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        str(held.hold),
        held.reason,
        _config_json(held),
        held.origin.describe(),
        held.origin.blob_sha,
        env.generation,
    )


async def requeue_with_cap(conn: asyncpg.Connection, env: Environment, owner: str, max_previews: int | None) -> bool:
    """A new preview learned its repository's `max_previews`: give it back, unconverged, so the claim places it in
    its repository's line."""
    return await _finish(
        conn,
        """UPDATE environments SET max_previews = $3, next_attempt_at = now(),
        lease_owner = NULL, lease_until = NULL, updated_at = now()
        WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        max_previews,
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
