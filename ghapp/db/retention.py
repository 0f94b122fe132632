"""Retention: what is old enough is deleted."""

from __future__ import annotations

import asyncpg


async def prune_deliveries(conn: asyncpg.Connection, older_than_days: float = 7) -> int:
    status = await conn.execute(
        "DELETE FROM deliveries WHERE received_at < now() - make_interval(days => $1::int)", int(older_than_days)
    )
    return int(status.split()[-1])
