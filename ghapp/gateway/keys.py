"""The gateway's hooks, as typed keys (ghapp/gateway/app.py describes how they are used)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ghapp.core.model import Environment

# `async def guard(request, env) -> web.StreamResponse | None`: None lets the request go on; a response ends it.
Guard = Callable[[web.Request, Environment], Awaitable[web.StreamResponse | None]]

GUARDS: web.AppKey[list[Guard]] = web.AppKey("guards")  # on the gateway application, run in order
RESERVED: web.AppKey[web.Application] = web.AppKey("reserved")  # the sub-application at /_ghapp/ on preview hosts
ENVIRONMENT: web.RequestKey[Environment] = web.RequestKey("environment")  # the preview the request's host names
