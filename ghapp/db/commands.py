"""The command queue: `/preview` comments and check-run buttons, stored with their delivery and carried out by
the command processor under a short lease (a replica that dies mid-way leaves it to another within seconds)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ghapp.core.contract import COMMANDS_CHANNEL
from ghapp.db.rows import seconds_due


async def store(
    conn: asyncpg.Connection,
    *,
    source: str,
    command: str,
    installation_id: int,
    repo_id: int,
    repository: str,
    pr_number: int,
    author: str,
    unknown: str | None = None,
    comment_id: int | None = None,
    sha: str | None = None,
    sha_named: bool = False,
) -> bool:
    """Queue a command (inside the delivery's transaction) and wake the processors of every replica. `sha`: the
    commit it deploys (named by the person, possibly abbreviated, when `sha_named`). A comment is queued once:
    False if this comment was queued before (the same comment delivered again under a new delivery id)."""
    status = await conn.execute(
        """INSERT INTO commands (source, command, unknown, installation_id, repo_id, repository, pr_number,
                                 comment_id, author, sha, sha_named)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (comment_id) WHERE comment_id IS NOT NULL DO NOTHING""",
        source,
        command,
        unknown,
        installation_id,
        repo_id,
        repository,
        pr_number,
        comment_id,
        author,
        sha,
        sha_named,
    )
    if status != "INSERT 0 1":
        return False
    await conn.execute("SELECT pg_notify($1, '')", COMMANDS_CHANNEL)
    return True


_CLAIM = """
UPDATE commands SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $1)
WHERE id = (SELECT id FROM commands WHERE done_at IS NULL AND next_attempt_at <= now()
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING *"""

_NEXT_DUE = """
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 FROM commands WHERE done_at IS NULL"""


async def claim(conn: asyncpg.Connection, lease_seconds: float) -> asyncpg.Record | None:
    """The oldest command that is due, leased for `lease_seconds` (then another processor may take it). Its
    `attempts` after the claim identifies this claim: `renew` and `retry_in` act only while it is unchanged."""
    return await conn.fetchrow(_CLAIM, lease_seconds)


async def renew(conn: asyncpg.Connection, command_id: int, claim: int, lease_seconds: float) -> bool:
    """Extend the lease of a command still being carried out; False if it was taken over or is done."""
    found = await conn.fetchval(
        """UPDATE commands SET next_attempt_at = now() + make_interval(secs => $3)
           WHERE id = $1 AND attempts = $2 AND done_at IS NULL RETURNING id""",
        command_id,
        claim,
        lease_seconds,
    )
    return found is not None


async def next_due(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next pending command is due (0 if one is), None if none is pending."""
    return seconds_due(await conn.fetchval(_NEXT_DUE))


async def record_steps(conn: asyncpg.Connection, command_id: int, steps: dict[str, Any]) -> None:
    """Record effects of a command as they happen (merged into `steps`), so that a retry skips them."""
    await conn.execute(
        "UPDATE commands SET steps = steps || $2::jsonb WHERE id = $1", command_id, json.dumps(steps, default=str)
    )


def steps_of(cmd: asyncpg.Record | dict) -> dict[str, Any]:
    raw = cmd["steps"]
    return json.loads(raw) if isinstance(raw, str) else dict(raw or {})


async def retry_in(conn: asyncpg.Connection, command_id: int, delay: float) -> None:
    await conn.execute(
        "UPDATE commands SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1", command_id, delay
    )


async def done(conn: asyncpg.Connection, command_id: int, outcome: str) -> None:
    await conn.execute("UPDATE commands SET done_at = now(), outcome = $2 WHERE id = $1", command_id, outcome)
