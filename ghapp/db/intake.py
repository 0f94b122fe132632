"""Group commit of webhook deliveries: the statements of one batch transaction that are not desired state itself
(the delivery ids, and a savepoint per delivery so one delivery's failure rolls back only its own writes)."""

from __future__ import annotations

import asyncpg

_RECORD = """
INSERT INTO deliveries (id, event)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
RETURNING id
"""


async def record_deliveries(conn: asyncpg.Connection, deliveries: list[tuple[str, str]]) -> set[str]:
    """Insert (delivery id, event) pairs (ids distinct) in one statement; returns the ids that were new (the
    others were accepted before: GitHub redelivered them)."""
    rows = await conn.fetch(_RECORD, [d for d, _e in deliveries], [e for _d, e in deliveries])
    return {r["id"] for r in rows}


async def forget_deliveries(conn: asyncpg.Connection, delivery_ids: list[str]) -> None:
    """Deliveries that were not accepted after all (their handler failed): a redelivery is not a duplicate."""
    await conn.execute("DELETE FROM deliveries WHERE id = ANY($1::text[])", delivery_ids)


class Savepoints:
    """One savepoint per delivery, one round trip each: the previous one is released in the same query. The last
    one is left open: COMMIT keeps it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.open = False

    async def next(self) -> None:
        await self.conn.execute("RELEASE SAVEPOINT delivery; SAVEPOINT delivery" if self.open else "SAVEPOINT delivery")
        self.open = True

    async def rollback(self) -> None:
        """Undo what was written since `next()`; the transaction goes on."""
        await self.conn.execute("ROLLBACK TO SAVEPOINT delivery")
