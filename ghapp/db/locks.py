"""Advisory locks that keep replicas from doing one thing twice at once (session-level: a connection that dies
releases them)."""

from __future__ import annotations

import asyncpg

RESYNC = 0x72737963  # one replica resyncs at a time
PUBLISH = 0x70756231  # with an environment id: one publisher per environment
CLAIM = 0x636C6169  # claims of run slots take turns (transaction-level)
RETENTION = 0x72657465  # one replica prunes at a time: two deleting the same old runs and logs deadlock


async def try_lock(conn: asyncpg.Connection, space: int, key: int = 0) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", space, key)


async def unlock(conn: asyncpg.Connection, space: int, key: int = 0) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, $2)", space, key)


async def xact_lock(conn: asyncpg.Connection, space: int, key: int = 0) -> None:
    """Wait for the lock; the transaction's end releases it."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", space, key)
