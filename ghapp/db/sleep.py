"""Sleep and wake: the desired sleep of previews, written by the idle sleeper, commands, the dashboard, the API and
the gateway's wake guard. Like every desired-state write, a change bumps the generation and wakes the workers
(NOTIFY in the same statement); the rules are in core/policy.py."""

from __future__ import annotations

import asyncpg

from ghapp.core.contract import NOTIFY_CHANNEL
from ghapp.core.model import Environment
from ghapp.db.rows import maybe_environment

# Every active, converged, awake preview idle for its sleep_after (else `$1`, GHAPP_SLEEP_AFTER; NULL: never) is put
# to sleep, in one statement over the partial index of awake previews (migration 013). policy.should_sleep is the
# same rule.
_SLEEP_IDLE = """
UPDATE environments SET desired_sleeping = true, generation = generation + 1, attempts = 0, next_attempt_at = now(),
    wake_requested_at = NULL, updated_at = now()
WHERE status = 'active' AND NOT desired_sleeping AND desired = 'present' AND generation <= observed_generation
  AND greatest(last_request_at, last_activity_at) < now() - make_interval(secs => coalesce(sleep_after, $1::float8))
RETURNING id, pg_notify($2, id::text)
"""

_SLEEP = """
UPDATE environments SET desired_sleeping = true, generation = generation + 1, attempts = 0, next_attempt_at = now(),
    wake_requested_at = NULL, updated_at = now()
WHERE id = $1 AND desired = 'present' AND NOT desired_sleeping
RETURNING id, pg_notify($2, id::text)
"""

# Only a preview that is asked to sleep is woken: of many concurrent requests (on any replica) the first one's
# UPDATE wakes it, the others wait for its row lock, then find it awake and change nothing.
_WAKE = """
UPDATE environments SET desired_sleeping = false, generation = generation + 1, attempts = 0, next_attempt_at = now(),
    wake_requested_at = now(), last_request_at = greatest(last_request_at, now()), updated_at = now()
WHERE id = $1 AND desired = 'present' AND desired_sleeping
RETURNING *, pg_notify($2, id::text)
"""


async def sleep_idle(conn: asyncpg.Connection, default_seconds: float | None) -> list[int]:
    """Put every preview idle for its `sleep_after` to sleep; returns their ids."""
    rows = await conn.fetch(_SLEEP_IDLE, default_seconds, NOTIFY_CHANNEL)
    return [r["id"] for r in rows]


async def request_sleep(conn: asyncpg.Connection, env_id: int) -> bool:
    """Put one preview to sleep (by hand); False if it is not wanted or already asleep."""
    return await conn.fetchrow(_SLEEP, env_id, NOTIFY_CHANNEL) is not None


async def request_wake(conn: asyncpg.Connection, env_id: int) -> tuple[bool, Environment | None]:
    """Wake one preview if it sleeps (or is going to sleep), once however many ask at the same time; the request
    counts as activity, so it does not fall asleep again at once. Returns whether this call woke it, and the
    environment as it is now (None: no such environment)."""
    row = await conn.fetchrow(_WAKE, env_id, NOTIFY_CHANNEL)
    if row is not None:
        return True, maybe_environment(row)
    return False, maybe_environment(await conn.fetchrow("SELECT * FROM environments WHERE id = $1", env_id))
