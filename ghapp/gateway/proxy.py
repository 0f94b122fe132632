"""The reverse proxy: one request (or WebSocket) to a preview's upstream, bodies streamed both ways.

One `Upstream` (kept-alive connections per preview, ghapp/gateway/http1.py) serves every preview.
The upstream's answer passes as the preview made it: status, headers (less the hop-by-hop ones and a `Set-Cookie`
for ghapp's own cookies), compressed bytes as they are (no decompression), redirects untouched (unless they name
the upstream's own loopback address); a 1xx as its final answer (a 101 nobody asked for) is a 502. No cookie is
kept between requests of different people: nothing stores cookies."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Sequence

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ghapp.core.gateway import request_headers, response_headers, rewrite_location
from ghapp.core.model import Environment
from ghapp.gateway import http1, pages
from ghapp.gateway.keys import RequestFilter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0  # the longest wait for the upstream's next bytes (the first one included), as nginx's 60 s
MAX_WS_MESSAGE = 16 * 1024 * 1024
PER_PREVIEW = 256  # concurrent upstream connections per preview
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 9.2.2: may be sent again
REFUSES = "refuses connections (it may be starting or have stopped)"
_UNSENDABLE_CLOSE = {None, 1005, 1006, 1015}  # codes that say "no code" or "abnormal", never sent in a frame


class Refused(Exception):
    """The preview refused the connection: nothing of the request was sent, so the caller may look at the preview
    again (it may have been put to sleep or moved a moment ago) and try once more; `page` is the answer otherwise."""

    def __init__(self, page: web.Response) -> None:
        super().__init__(page.reason)
        self.page = page


class Upstream:
    """The client to every preview: plain requests on the gateway's own HTTP/1.1 client (ghapp/gateway/http1.py,
    kept-alive connections per preview), WebSockets on an aiohttp ClientSession."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> None:
        # Per preview at most PER_PREVIEW connections at once, so one preview's slow clients cannot take them all.
        self.pool = http1.Pool(connect_timeout=connect_timeout, read_timeout=read_timeout, limit=PER_PREVIEW)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=PER_PREVIEW, keepalive_timeout=30),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            # Only what the client sent: no User-Agent, Accept or Content-Type of aiohttp's own.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    @property
    def connect_timeout(self) -> float:
        return self.pool.connect_timeout

    @property
    def read_timeout(self) -> float:
        """The longest wait for the upstream's next bytes (the first one included)."""
        return self.pool.read_timeout

    @read_timeout.setter
    def read_timeout(self, seconds: float) -> None:
        self.pool.read_timeout = seconds

    async def close(self) -> None:
        self.pool.close()
        await self.session.close()

    async def forward(
        self,
        request: web.Request,
        env: Environment,
        origin: str,
        public_origin: str,
        filters: Sequence[RequestFilter] = (),
    ) -> web.StreamResponse:
        """Proxy `request` to `origin` (the upstream's `scheme://host:port`); raises `Refused` when the upstream
        refuses the connection."""
        target = request.rel_url.raw_path_qs
        if not target.startswith("/"):  # `OPTIONS *` or anything else that is not a path
            return pages.page(400, "Bad request", "The gateway forwards requests for paths only.")
        # The preview's published host, not the visitor's spelling of it (case, a trailing dot, a written default
        # port): a preview building links from X-Forwarded-Host must not put a visitor's spelling in a page a cache
        # keeps.
        host = _authority(public_origin)
        sent: Iterable[tuple[str, str]] = request.headers.items()
        for keep in filters:
            sent = keep(CIMultiDict(sent))
        headers = request_headers(sent, client_ip=request.remote or "", proto=_proto(public_origin), host=host)
        if _is_websocket(request):
            return await self._websocket(request, env, URL(origin + target, encoded=True), CIMultiDict(headers))
        # The body's framing is the gateway's own (http1.Pool): the visitor's Content-Length, else chunked.
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        body = request.content.iter_any() if request.body_exists else None
        try:
            try:
                answer = await self.pool.send(origin, request.method, target, headers, body, request.content_length)
            except http1.Stale:
                if body is not None or request.method not in IDEMPOTENT:
                    raise
                # The preview closed a kept-alive connection as the request went out: once more on a new one.
                answer = await self.pool.send(origin, request.method, target, headers, fresh=True)
        except http1.ConnectFailed:
            raise Refused(pages.upstream_error(env, 502, REFUSES)) from None
        except http1.UpstreamError as e:
            return pages.upstream_error(
                env, 504 if isinstance(e, http1.ConnectTimeout | http1.ReadTimeout) else 502, str(e)
            )
        try:
            return await self._relay(request, answer, origin, public_origin)
        finally:
            answer.close()

    async def _relay(
        self, request: web.Request, answer: http1.Answer, origin: str, public_origin: str
    ) -> web.StreamResponse:
        body = answer.body  # the whole of it, when it has all arrived: sent with the head in one write
        response = (_Whole if body is not None else web.StreamResponse)(
            status=answer.status, reason=answer.reason or None
        )
        for name, value in response_headers(answer.headers):
            if name.lower() == "location":
                value = rewrite_location(value, origin, public_origin)
            response.headers.add(name, value)
        await response.prepare(request)
        try:
            if body is None:
                async for chunk in answer.chunks():
                    await response.write(chunk)
            await response.write_eof(body or b"")
        except ConnectionResetError:
            pass  # the client went away: the upstream connection is closed, not reused
        except http1.UpstreamError as e:
            # The status is sent already: end the client's connection so it sees a cut answer, not a short one.
            log.info("%s: the upstream's answer broke off (%s)", request.host, e)
            if request.transport is not None:
                request.transport.close()
        return response

    def _error(self, env: Environment, error: BaseException) -> web.Response:
        """The page for a failed WebSocket handshake."""
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return pages.upstream_error(
                env, 504, f"did not accept a connection within {self.connect_timeout:g} seconds"
            )
        if isinstance(error, TimeoutError):
            return pages.upstream_error(env, 504, f"did not answer within {self.read_timeout:g} seconds")
        if isinstance(error, aiohttp.ClientConnectorError):
            raise Refused(pages.upstream_error(env, 502, REFUSES))
        if isinstance(error, aiohttp.WSServerHandshakeError):
            return pages.upstream_error(env, 502, f"refused the WebSocket connection (status {error.status})")
        return pages.upstream_error(env, 502, http1.CLOSED)

    async def _websocket(
        self, request: web.Request, env: Environment, url: URL, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        for name in [n for n in headers if n.lower().startswith("sec-websocket-")]:
            headers.popall(name)  # the upstream handshake has its own key, version and extensions
        try:
            upstream = await self.session.ws_connect(
                url.with_scheme("wss" if url.scheme == "https" else "ws"),
                headers=headers,
                protocols=protocols,
                autoclose=False,
                max_msg_size=MAX_WS_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_close=self.connect_timeout),
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            return self._error(env, e)
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), autoclose=False, max_msg_size=MAX_WS_MESSAGE
        )
        try:
            await client.prepare(request)
            await _bridge(client, upstream)
        finally:
            await upstream.close()
        return client


class _Whole(web.StreamResponse):
    """An answer whose body is all here: its head is written with the body, in one write (aiohttp sends a
    StreamResponse's head at `prepare`, a Response's with its body; this is the latter's behaviour)."""

    _send_headers_immediately = False


@functools.cache
def _authority(public_origin: str) -> str:
    return URL(public_origin).raw_authority


def _proto(public_origin: str) -> str:
    return "https" if public_origin.startswith("https:") else "http"


def _is_websocket(request: web.Request) -> bool:
    upgrade = request.headers.get("Upgrade", "").lower()
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    return request.method == "GET" and upgrade == "websocket" and "upgrade" in connection


WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _bridge(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Messages both ways until one side closes; its close code and reason are passed to the other side."""
    relays: dict[asyncio.Task[tuple[int | None, str]], WebSocket] = {
        asyncio.create_task(_relay_messages(client, upstream)): client,
        asyncio.create_task(_relay_messages(upstream, client)): upstream,
    }
    done, pending = await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    first = done.pop()
    closer = relays[first]
    other = upstream if closer is client else client
    received, reason = first.result() if first.exception() is None else (1011, "")
    code = 1000 if received is None or received in _UNSENDABLE_CLOSE else received
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await closer.close(code=code)  # answers the close it sent (autoclose is off, to pass its code on)
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await other.close(code=code, message=reason.encode()[:123])


async def _relay_messages(source: WebSocket, sink: WebSocket) -> tuple[int | None, str]:
    """Copy messages until `source` closes; its close code and reason."""
    while True:
        message = await source.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.CLOSE:
            return message.data, message.extra or ""
        elif message.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return source.close_code, ""
