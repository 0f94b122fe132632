"""SQL for dashboard sessions (server-side, so that logout ends them): the cookie's random id is stored hashed."""

from __future__ import annotations

import hashlib

import asyncpg


def id_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def create(conn: asyncpg.Connection, session_id: str, key_id: str, csrf: str, ttl_seconds: float) -> None:
    """A new session; expired ones are deleted on the way (there are few: one per sign-in)."""
    await conn.execute("DELETE FROM sessions WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO sessions (id_hash, key_id, csrf, expires_at) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        id_hash(session_id),
        key_id,
        csrf,
        float(ttl_seconds),
    )


async def find(conn: asyncpg.Connection, session_id: str, key_id: str) -> str | None:
    """The CSRF token of a live session signed in with the current admin token, or None."""
    return await conn.fetchval(
        "SELECT csrf FROM sessions WHERE id_hash = $1 AND key_id = $2 AND expires_at > now()",
        id_hash(session_id),
        key_id,
    )


async def delete(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE id_hash = $1", id_hash(session_id))
