"""The gateway's hooks, as typed keys (ghapp/gateway/app.py describes how they are used)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from multidict import CIMultiDict

from ghapp.core.model import Environment

# `async def guard(request, env) -> web.StreamResponse | None`: None lets the request go on; a response ends it.
Guard = Callable[[web.Request, Environment], Awaitable[web.StreamResponse | None]]

# `filter(headers) -> headers`: what of the client's request headers the preview may see (e.g. without ghapp's own
# session cookie); applied in order, before the gateway's X-Forwarded-* are added.
RequestFilter = Callable[[CIMultiDict[str]], Iterable[tuple[str, str]]]

GUARDS: web.AppKey[list[Guard]] = web.AppKey("guards")  # on the gateway application, run in order
RESERVED: web.AppKey[web.Application] = web.AppKey("reserved")  # the sub-application at /_ghapp/ on preview hosts
ENVIRONMENT: web.RequestKey[Environment] = web.RequestKey("environment")  # the preview the request's host names
