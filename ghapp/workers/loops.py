"""The one way a background loop runs here: a pass of work, then sleep until woken (LISTEN/NOTIFY from any
replica, or in-process), until something is due, or until the slow poll; a failing pass is retried with backoff
and never ends the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType

from ghapp import db
from ghapp.core.policy import backoff

log = logging.getLogger(__name__)

# A pass answers how long until it wants to run again: None for "when woken, or at the slow poll", 0 for "at once:
# there is more to do", or the seconds until something it knows of is due.
Pass = Callable[[], Awaitable[float | None]]


class Wake:
    """What wakes a loop: `set()` in this process, or a NOTIFY on `channel` from any replica. `on_payload` also sees
    each notification's payload (the reconciler uses it to interrupt a superseded run)."""

    def __init__(
        self,
        database_url: str | None = None,
        channel: str | None = None,
        on_payload: Callable[[str], None] | None = None,
    ):
        self.database_url = database_url
        self.channel = channel
        self.on_payload = on_payload
        self._event = asyncio.Event()
        self._listener: asyncio.Task | None = None

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float, coalesce: float = 0.0) -> None:
        """Until woken or `timeout`; after a wake-up, `coalesce` seconds more so one pass serves a burst."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives as the event is
        # set (a shutdown that wakes the loop), and the loop would then never end.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
            await asyncio.sleep(coalesce)
        self._event.clear()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._event.set()
        if self.on_payload is not None:
            self.on_payload(payload)

    async def __aenter__(self) -> Wake:
        if self.database_url and self.channel:
            # Notifications sent while the listener reconnects are lost: wake up after each (re)connection.
            self._listener = asyncio.create_task(
                db.listen(self.database_url, self.channel, self._notified, on_connect=self.set)
            )
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)


async def run_loop(name: str, work: Pass, *, poll: float, wake: Wake | None = None, coalesce: float = 0.0) -> None:
    """Run `work` pass after pass until cancelled."""
    wake = wake or Wake()
    failures = 0
    async with wake:
        while True:
            try:
                wanted = await work()
                failures = 0
            except db.UNAVAILABLE as e:
                failures += 1
                delay = backoff(failures, 0.5, 30.0)
                log.warning("%s: database unavailable (%s); again in %.1fs", name, e, delay)
                await wake.wait(delay)
                continue
            except Exception:
                failures += 1
                delay = backoff(failures, 1.0, 30.0)
                log.exception("%s crashed; restarting it in %.0fs", name, delay)
                await asyncio.sleep(delay)
                continue
            timeout = poll if wanted is None else min(poll, wanted)
            if timeout > 0:
                await wake.wait(timeout, coalesce)


class Drain:
    """Lets a loop finish what it is doing at shutdown instead of being cancelled mid-call: a pass takes new work
    only while not `stopping`, and holds `busy()` while it works; `drain(grace)` stops new work and waits up to
    `grace` seconds for the work under way."""

    def __init__(self) -> None:
        self.stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def drain(self, grace: float) -> bool:
        """True if the work under way finished within `grace`."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True
