"""The preview gateway's aiohttp application and its lifetime.

`ghapp serve` (and `ghapp demo`) listen on GHAPP_GATEWAY_PORT too (`create_app(settings, gateway=True)`): a request
for `<environment_name>.<preview domain>` (GHAPP_PREVIEW_DOMAIN, default `localhost:<port>`) is proxied to that
environment's `preview_url`, the module's output, never to a URL taken from the request.

A request goes through, in order:
1. the host: an unknown host is a 404 page; the environment is looked up by name (cached `LOOKUP_TTL` seconds;
   `Gateway.forget(name)` drops an entry at once, e.g. after waking a preview);
2. `/_ghapp/...`: ghapp's own pages on preview hosts (below); they are not proxied and no guard runs before them;
   any other spelling a preview's router could read as one of them (`//_ghapp/`, `/x/../_ghapp/`, `/_GHAPP/`) is a
   404 page, never proxied;
3. the guards, in order (below); the first that answers ends the request with its answer; a client that sent
   `Expect: 100-continue` is told to continue only once they all let it through (a refused one never uploads);
4. a preview that is not `active` (or has no http(s) `preview_url`): a page saying its status;
5. the proxy (ghapp/gateway/proxy.py); a preview that refuses the connection is looked up again, uncached, and the
   request goes through 3-5 once more if its row changed (put to sleep a moment ago: the wake guard answers); the
   request is counted in `ghapp_gateway_requests_total{code}` and its
   environment's activity recorded (`Activity`, written in one batched UPDATE every few seconds).
An answer after which the connection cannot carry another request ends it (`Connection: close`): one to a request
that asked to switch protocols without switching (anything but a bridged WebSocket), or one sent before the
request's body was asked for.

Hooks for other parts (add them before the application starts, e.g. in `ghapp/web/app.create_app`; `gateway` is
`app[ghapp.web.keys.GATEWAY]`, the `Gateway` below; the gateway starts after all of the main application's
`cleanup_ctx` contexts, and stops at its shutdown, before the database closes):
- **Guards**: `gateway.guards.append(guard)` (the same list is the gateway application's `ghapp.gateway.keys.GUARDS`),
  each `async def guard(request: web.Request, env: Environment) -> web.StreamResponse | None`: None lets the request
  go on, a response ends it with that response (access: a sign-in redirect or 403; wake: a "waking up" page or 503).
  A guard may put a fresher row in `request[ghapp.gateway.keys.ENVIRONMENT]` (a preview it waited for to wake):
  the next guards and the proxy use that one.
- **Shared state**: `gateway.share(KEY)`: the gateway application and its `/_ghapp/` sub-application get the main
  application's `KEY` when they start, for guards and pages that read `request.app[KEY]` (a request to a preview
  belongs to the gateway application, one under `/_ghapp/` to the sub-application).
- **Request filters**: `gateway.request_filters.append(f)`, `f(headers: CIMultiDict) -> Iterable[(name, value)]`:
  what of the client's headers the preview may see (the access guard's `forwarded_headers` drops ghapp's own
  session cookie and token); applied in order, before the gateway sets `X-Forwarded-*`.
- **ghapp's pages on preview hosts**: `gateway.reserved.router.add_get("/signin", handler)` serves `/_ghapp/signin` on
  every preview host (`reserved` is a sub-application mounted at `/_ghapp/`, also `ghapp.gateway.keys.RESERVED`).
  Its handlers find the preview in `request[ghapp.gateway.keys.ENVIRONMENT]` and the gateway in
  `request.config_dict[ghapp.web.keys.GATEWAY]`.
- **Activity**: `gateway.activity.last_request(env_id)`: the newest request this replica has not written yet, else
  None (then `environments.last_request_at` holds it); `gateway.forget(name)` after changing a preview's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import urllib.parse
from typing import Any

import asyncpg
from aiohttp import HttpVersion11, web
from cachetools import TTLCache

from ghapp import db
from ghapp.config import ConfigError, Settings
from ghapp.core.contract import Status
from ghapp.core.gateway import environment_name_of, gateway_url, reserved_spelling, upgrade_requested, upstream_origin
from ghapp.core.model import Environment
from ghapp.db import gateway as queries
from ghapp.gateway import pages
from ghapp.gateway.activity import Activity
from ghapp.gateway.keys import ENVIRONMENT, GUARDS, RESERVED, Guard, RequestFilter
from ghapp.gateway.proxy import Refused, Upstream
from ghapp.web import keys
from ghapp.web.metrics import Metrics

log = logging.getLogger(__name__)

LOOKUP_TTL = 2.0  # seconds a host's environment (or its absence) is remembered
RESERVED_PREFIX = "/_ghapp"


def requested_host(request: web.Request) -> str:
    """The host a request names: an absolute-form target's authority (RFC 9112 3.2.2: it wins over `Host`; aiohttp's
    `request.host` drops its port), else the `Host` header."""
    if not request.raw_path.startswith("/"):
        try:
            return urllib.parse.urlsplit(request.raw_path).netloc
        except ValueError:
            return ""
    return request.host


class Gateway:
    """One per process: the gateway application, its hooks, the environment cache, the upstream client and the
    activity batcher. `port` is the port it listens on once started (GHAPP_GATEWAY_PORT=0: a free one)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.site = settings.preview_site
        self.metrics = metrics
        self.guards: list[Guard] = []
        self.activity = Activity()
        self.port: int | None = None
        self._cache: TTLCache[str, Environment | None] = TTLCache(maxsize=10_000, ttl=LOOKUP_TTL)
        self._pool: asyncpg.Pool | None = None
        self._ready: asyncio.Event | None = None
        self.upstream: Upstream | None = None  # the client to previews, while the gateway runs
        self.request_filters: list[RequestFilter] = []
        self._shared: list[web.AppKey[Any]] = []
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._counters: dict[int, Any] = {}  # ghapp_gateway_requests_total's child per status, looked up once
        self.app = web.Application(middlewares=[self._front])
        self.app.on_response_prepare.append(_close_unless_upgraded)
        self.app[keys.GATEWAY] = self
        self.app[GUARDS] = self.guards
        self.reserved = web.Application()
        self.app[RESERVED] = self.reserved

    def url(self, environment_name: str) -> str:
        return gateway_url(environment_name, self.site)

    def forget(self, environment_name: str) -> None:
        self._cache.pop(environment_name, None)

    async def environment(self, name: str) -> Environment | None:
        if name in self._cache:
            return self._cache[name]
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            env = await queries.environment_by_name(conn, name)
        self._cache[name] = env
        return env

    @web.middleware
    async def _front(self, request: web.Request, handler) -> web.StreamResponse:
        """Every request: counted by status; the preview its host names in `request[ENVIRONMENT]` for every route.
        (One middleware, not two: aiohttp wraps each one anew per request.)"""
        status = 500
        try:
            response = await self._resolve(request, handler)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            counter = self._counters.get(status)
            if counter is None:
                counter = self._counters[status] = self.metrics.gateway_requests.labels(str(status))
            counter.inc()

    async def _resolve(self, request: web.Request, handler) -> web.StreamResponse:
        """The preview the host names, in `request[ENVIRONMENT]`, for every route."""
        name = environment_name_of(requested_host(request), self.site)
        if name is None:
            return pages.unknown_host(request.host)
        if self._ready is None or not self._ready.is_set():
            return pages.unavailable("ghapp is starting; try again in a moment.")
        try:
            env = await self.environment(name)
        except db.UNAVAILABLE as e:
            log.warning("gateway: database unavailable (%s)", type(e).__name__)
            return pages.unavailable("ghapp cannot reach its database; try again in a moment.")
        if env is None:
            return pages.unknown_host(request.host)
        request[ENVIRONMENT] = env
        return await handler(request)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        if reserved_spelling(request.rel_url.raw_path):
            return pages.page(404, "Not a page of this preview", f"Paths under {RESERVED_PREFIX}/ are ghapp's.")
        try:
            return await self._guarded_forward(request)
        except Refused as refused:
            # The preview's row may be up to LOOKUP_TTL old: one put to sleep, moved or destroyed a moment ago refuses
            # connections. Nothing was sent yet, so look again and, if it changed, answer as it is now.
            cached = request[ENVIRONMENT]
            self.forget(cached.name)
            try:
                fresh = await self.environment(cached.name)
            except db.UNAVAILABLE:
                return refused.page
            if fresh is None:
                return pages.unknown_host(request.host)
            if fresh == cached:
                return refused.page
            request[ENVIRONMENT] = fresh
            try:
                return await self._guarded_forward(request)
            except Refused as again:
                return again.page

    async def _guarded_forward(self, request: web.Request) -> web.StreamResponse:
        for guard in self.guards:
            if (answer := await guard(request, request[ENVIRONMENT])) is not None:
                return answer
        env = request[ENVIRONMENT]  # as the guards leave it: a guard that waited for a wake puts the fresh row there
        origin = _upstream_origin(env.preview_url)
        if env.status != Status.ACTIVE or origin is None:
            return pages.not_active(env)
        if _expects_continue(request) and not request.get(CONTINUED, False):
            request[CONTINUED] = True
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's own bytes start after it
        self.activity.touch(env.id)
        assert self.upstream is not None
        return await self.upstream.forward(
            request, env, origin, self.url(env.name).rstrip("/"), filters=self.request_filters
        )

    def share(self, key: web.AppKey[Any]) -> None:
        """Give the gateway application (and its `/_ghapp/` sub-application) the main application's `key` when it
        starts: for guards and pages that read `request.app[key]` (a preview's requests are not the main app's)."""
        self._shared.append(key)

    async def start(self, app: web.Application) -> None:
        """The main application's startup, after all its contexts (pool, App client, what `share` names): listen on
        GHAPP_HOST:GHAPP_GATEWAY_PORT."""
        for key in self._shared:
            self.app[key] = self.reserved[key] = app[key]
        self._pool, self._ready = app[keys.POOL], app[keys.READY]
        self.upstream = Upstream()
        # Mounted now, not at creation: mounting freezes the sub-application's routes, which other parts add to.
        self.app.add_subapp(RESERVED_PREFIX, self.reserved)
        self.app.router.add_route("*", "/{path:.*}", self._proxy, expect_handler=_continue_after_the_guards)
        # At shutdown, requests and WebSockets still open get a few seconds.
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=min(5.0, self.settings.shutdown_grace)
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.gateway_port)
        try:
            await site.start()
        except OSError as e:
            raise ConfigError(
                f"the preview gateway cannot listen on {self.settings.host}:{self.settings.gateway_port} "
                f"({e.strerror}); set GHAPP_GATEWAY_PORT to a free port"
            ) from None
        self.port = self._runner.addresses[0][1]
        self._flusher = asyncio.create_task(self._record_activity(self._pool, self._ready))
        log.info("preview gateway on %s (previews at %s)", site.name, self.url("<environment_name>"))

    async def stop(self, _app: web.Application) -> None:
        """The main application's shutdown (before its database closes): stop listening, write the last activity."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._runner is not None:
            await self._runner.cleanup()
        if self.upstream is not None:
            await self.upstream.close()

    async def _record_activity(self, pool: asyncpg.Pool, ready: asyncio.Event) -> None:
        await ready.wait()
        await self.activity.run(pool)


CONTINUED: web.RequestKey[bool] = web.RequestKey("continued")  # `100 Continue` sent


def _expects_continue(request: web.Request) -> bool:
    return request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue"


async def _continue_after_the_guards(request: web.Request) -> None:
    """aiohttp's `Expect` handler, except that `100 Continue` waits until the guards let the request through
    (`_guarded_forward`): a client that may not see the preview is refused before it sends its body."""
    if request.version == HttpVersion11 and not _expects_continue(request):
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {request.headers.get('Expect', '')[:100]}")


async def _close_unless_upgraded(request: web.Request, response: web.StreamResponse) -> None:
    """Answers after which the connection cannot carry another request, so they end it (instead of leaving the
    client waiting): a request that asked to switch protocols and was answered without switching (a refused
    WebSocket, `Upgrade: h2c`, an upgrade on a POST), whose following bytes the server's parser takes for the new
    protocol; and a request answered before it was told to send its body (`Expect: 100-continue`), whose body may
    never come."""
    switched = response.status == 101
    unsent = _expects_continue(request) and not request.get(CONTINUED, False) and response.status >= 200
    if (not switched and upgrade_requested(request.method, request.headers.items())) or unsent:
        response.force_close()
        response.headers["Connection"] = "close"  # this hook runs after aiohttp has written its own Connection


_upstream_origin = functools.lru_cache(maxsize=10_000)(upstream_origin)  # once per preview, not per request


def setup(app: web.Application) -> Gateway:
    """The gateway of the main application `app`: it starts once all of the app's contexts have (the pool, and what
    other parts set up), and stops at its shutdown, before the database closes."""
    gateway = Gateway(app[keys.SETTINGS], app[keys.METRICS])
    app[keys.GATEWAY] = gateway
    app.on_startup.append(gateway.start)
    app.on_shutdown.append(gateway.stop)
    return gateway
