"""Which previews were requested, kept in memory and written to `environments.last_request_at` in one batched
UPDATE every few seconds: never a database write per request."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import asyncpg

from ghapp.db import UNAVAILABLE, gateway

log = logging.getLogger(__name__)

FLUSH_EVERY = 5.0


class Activity:
    """`touch` per request (a dict write); `run` flushes every `every` seconds, and once more when cancelled.

    The sleep helper reads `last_request(env_id)`: the newest request this replica saw that is not written yet,
    else None (then `environments.last_request_at` is the answer, written by every replica)."""

    def __init__(self, every: float = FLUSH_EVERY) -> None:
        self.every = every
        self._pending: dict[int, dt.datetime] = {}
        self.flushes = 0  # batched UPDATEs written (tests, metrics)

    def touch(self, env_id: int) -> None:
        self._pending[env_id] = dt.datetime.now(dt.UTC)

    def last_request(self, env_id: int) -> dt.datetime | None:
        return self._pending.get(env_id)

    async def flush(self, pool: asyncpg.Pool) -> int:
        """Write what was touched since the last flush; returns how many previews. On a database error the times
        are kept for the next flush (a newer touch wins)."""
        batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            async with pool.acquire() as conn:
                await gateway.record_requests(conn, batch)
        except BaseException:
            for env_id, at in batch.items():
                self._pending.setdefault(env_id, at)
            raise
        self.flushes += 1
        return len(batch)

    async def run(self, pool: asyncpg.Pool) -> None:
        try:
            while True:
                await asyncio.sleep(self.every)
                try:
                    await self.flush(pool)
                except Exception as e:  # noqa: BLE001 - the loop must outlive a database outage
                    log.warning("gateway: cannot record activity (%s); keeping it for the next flush", e)
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await asyncio.shield(self.flush(pool))
