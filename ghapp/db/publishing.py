"""The publisher's SQL: which environments changed since GitHub was last told, what their last run says, and what
was published."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ghapp.core.model import Environment
from ghapp.db.rows import maybe_environment, to_environment

_DUE = """
SELECT * FROM environments WHERE version > published_version AND publish_after <= now()
ORDER BY publish_after LIMIT $1"""


async def due(conn: asyncpg.Connection, limit: int) -> list[Environment]:
    """Environments whose state changed since it was last published and whose pause is over."""
    found = await conn.fetch(_DUE, limit)
    return [to_environment(r) for r in found]


async def unpublished(conn: asyncpg.Connection, env_id: int) -> Environment | None:
    """The environment as it is now, if it still has something to publish."""
    env = maybe_environment(await conn.fetchrow("SELECT * FROM environments WHERE id = $1", env_id))
    return env if env is not None and env.version > env.published_version else None


async def latest_run(conn: asyncpg.Connection, env_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, action, started_at, finished_at FROM runs WHERE environment_id = $1 ORDER BY id DESC LIMIT 1",
        env_id,
    )


async def queue_place(conn: asyncpg.Connection, env_id: int) -> tuple[int, int] | None:
    """(live previews of its repository, its position in line) for a new preview not yet started; None otherwise."""
    row = await conn.fetchrow("SELECT live, position FROM preview_queue WHERE id = $1", env_id)
    return (row["live"], row["position"]) if row else None


async def failure_tail(conn: asyncpg.Connection, run_id: int, lines: int) -> str:
    """The last lines of a run that are Terraform's or ghapp's own: a provisioner's output (the preview's own code)
    is never shown on GitHub, only on the dashboard."""
    found = await conn.fetch(
        "SELECT line FROM run_logs WHERE run_id = $1 AND source = 'terraform' ORDER BY seq DESC LIMIT $2",
        run_id,
        lines,
    )
    return "\n".join(r["line"] for r in reversed(found))


async def save(conn: asyncpg.Connection, env_id: int, published: dict[str, Any]) -> None:
    """Record what GitHub has been shown so far (as soon as it answered), whether or not the publish finished."""
    await conn.execute("UPDATE environments SET published = $2 WHERE id = $1", env_id, _json(published))


async def published(
    conn: asyncpg.Connection, env_id: int, published: dict[str, Any], version: int, pause: float
) -> None:
    """`version` is on GitHub; the next publish waits at least `pause` seconds (rate limits)."""
    await conn.execute(
        """UPDATE environments SET published = $2, published_version = $3, publish_attempts = 0,
               publish_after = now() + make_interval(secs => $4) WHERE id = $1""",
        env_id,
        _json(published),
        version,
        pause,
    )


async def failed(conn: asyncpg.Connection, env_id: int, published: dict[str, Any], attempts: int, delay: float) -> None:
    await conn.execute(
        """UPDATE environments SET published = $2, publish_attempts = $3,
               publish_after = now() + make_interval(secs => $4) WHERE id = $1""",
        env_id,
        _json(published),
        attempts,
        delay,
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str)
