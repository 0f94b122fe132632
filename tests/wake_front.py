"""A stand-in for the preview gateway (branch `gateway`, not merged yet) serving one preview: the wake guard, then the
preview's own answer, fetched as it is now. Used by tests/test_wake.py and bench/wake.py."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp import web

from ghapp.config import Settings
from ghapp.db import reads
from ghapp.gateway.wake import Waker


async def front_app(pool: asyncpg.Pool, env_id: int, wake_timeout: float = 30.0) -> web.Application:
    """A stand-in for the gateway, serving one preview: the wake guard, then the preview's own answer."""
    waker = Waker(pool, Settings(wake_timeout=wake_timeout))
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.StreamResponse:
        async with pool.acquire() as conn:
            env = await reads.get_environment(conn, env_id)
        assert env is not None
        if (answer := await waker(request, env)) is not None:
            return answer
        async with pool.acquire() as conn:
            env = await reads.get_environment(conn, env_id)  # the gateway proxies to the preview as it is now
        assert env is not None and env.preview_url
        async with session.get(env.preview_url.rstrip("/") + request.path_qs) as upstream:
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body, content_type=upstream.content_type)

    async def close(_app: web.Application) -> None:
        await waker.close()
        await session.close()

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    app.on_cleanup.append(close)
    return app
