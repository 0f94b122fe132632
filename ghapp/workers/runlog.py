"""A run's log lines and progress, written to the database as they arrive, batched by a background flusher."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from ghapp.core.policy import backoff
from ghapp.db import UNAVAILABLE, runs
from ghapp.isolation import Redactor

log = logging.getLogger(__name__)

MAX_BUFFERED = 20_000  # lines kept in memory while the database is unreachable


class RunLog:
    def __init__(self, pool: asyncpg.Pool, run_id: int, env_id: int, redact: Redactor | None = None):
        self.pool = pool
        self.redact = redact or Redactor()
        self.run_id = run_id
        self.env_id = env_id
        self._pending: list[tuple[str, str]] = []
        self._progress: dict | None = None
        self._next_seq = 0
        self._dropped = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._flusher = asyncio.create_task(self._flush_loop())

    def add(self, line: str) -> None:
        """Queue one line; its `source` attribute (ghapp.terraform.LogLine) says whether GitHub may see it."""
        if len(self._pending) >= MAX_BUFFERED:
            self._pending.pop(0)
            self._dropped += 1
        self._pending.append((self.redact(str(line)), getattr(line, "source", "terraform")))
        self._ready.set()

    def set_progress(self, progress: dict) -> None:
        self._progress = progress
        self._ready.set()

    async def close(self) -> None:
        """Flush what is left (bounded: a dead database does not hold the run up for long)."""
        self._closed = True
        self._ready.set()
        try:
            await asyncio.wait_for(self._flusher, 15)
        except TimeoutError:
            log.warning("run %d: %d log lines could not be stored", self.run_id, len(self._pending))

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self._flush()
                failures = 0
            except UNAVAILABLE:
                failures += 1
                await asyncio.sleep(backoff(failures, 0.4, 5.0))
                self._ready.set()
                continue
            if self._closed and not self._pending:
                return

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        dropped, self._dropped = self._dropped, 0
        progress, self._progress = self._progress, None
        note = (f"[{dropped} log lines dropped while the database was unreachable]", "terraform")
        lines = [note, *batch] if dropped else batch
        try:
            async with self.pool.acquire() as conn:
                if lines:
                    await runs.append_logs(conn, self.run_id, self._next_seq, lines)
                if progress is not None:
                    await runs.set_progress(conn, self.env_id, progress)
        except BaseException:
            self._pending = batch + self._pending
            self._dropped += dropped
            self._progress = self._progress or progress
            raise
        self._next_seq += len(lines)
