"""The command queue: `/preview` comments and check-run buttons, stored with their delivery and carried out by
the command processor under a short lease (a replica that dies mid-way leaves it to another within seconds)."""

from __future__ import annotations

import asyncpg

from ghapp.core.contract import COMMANDS_CHANNEL


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
) -> None:
    """Queue a command (inside the delivery's transaction) and wake the processors of every replica."""
    await conn.execute(
        """INSERT INTO commands (source, command, unknown, installation_id, repo_id, repository, pr_number,
                                 comment_id, author)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        source,
        command,
        unknown,
        installation_id,
        repo_id,
        repository,
        pr_number,
        comment_id,
        author,
    )
    await conn.execute("SELECT pg_notify($1, '')", COMMANDS_CHANNEL)


async def claim(conn: asyncpg.Connection, lease_seconds: float) -> asyncpg.Record | None:
    """The oldest command that is due, leased for `lease_seconds` (then another processor may take it)."""
    return await conn.fetchrow(
        """UPDATE commands SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $1)
           WHERE id = (SELECT id FROM commands WHERE done_at IS NULL AND next_attempt_at <= now()
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        lease_seconds,
    )


async def retry_in(conn: asyncpg.Connection, command_id: int, delay: float) -> None:
    await conn.execute(
        "UPDATE commands SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1", command_id, delay
    )


async def done(conn: asyncpg.Connection, command_id: int, outcome: str) -> None:
    await conn.execute("UPDATE commands SET done_at = now(), outcome = $2 WHERE id = $1", command_id, outcome)
