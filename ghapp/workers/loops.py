"""Background loops that must not die: an unexpected error is logged and the loop starts again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def forever(
    name: str, loop: Callable[[], Awaitable[None]], first_delay: float = 1.0, max_delay: float = 30.0
) -> None:
    delay = first_delay
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting it in %.0fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
