"""The reverse proxy: one request (or WebSocket) to a preview's upstream, bodies streamed both ways.

One `Upstream` (an aiohttp ClientSession, its connection pool kept alive between requests) serves every preview.
The upstream's answer passes as the preview made it: status, headers (less the hop-by-hop ones and a `Set-Cookie`
for ghapp's own cookies), compressed bytes as they are (no decompression), redirects untouched (unless they name
the upstream's own loopback address); a 1xx as its final answer (a 101 nobody asked for) is a 502. No
cookie is kept between requests of different people: the session's cookie jar stores nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ghapp.core.gateway import request_headers, response_headers, rewrite_location
from ghapp.core.model import Environment
from ghapp.gateway import pages
from ghapp.gateway.keys import RequestFilter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0  # the longest wait for the upstream's next bytes (the first one included), as nginx's 60 s
MAX_WS_MESSAGE = 16 * 1024 * 1024
PER_PREVIEW = 256  # concurrent upstream connections per preview
_UNSENDABLE_CLOSE = {None, 1005, 1006, 1015}  # codes that say "no code" or "abnormal", never sent in a frame


class Refused(Exception):
    """The preview refused the connection: nothing of the request was sent, so the caller may look at the preview
    again (it may have been put to sleep or moved a moment ago) and try once more; `page` is the answer otherwise."""

    def __init__(self, page: web.Response) -> None:
        super().__init__(page.reason)
        self.page = page


class Upstream:
    """One HTTP client for every preview: a pool of keep-alive connections."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.session = aiohttp.ClientSession(
            # Per preview at most PER_PREVIEW connections at once, so one preview's slow clients cannot take them all.
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=PER_PREVIEW, keepalive_timeout=30),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            # Only what the client sent: no User-Agent, Accept or Content-Type of aiohttp's own.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    def _timeout(self) -> aiohttp.ClientTimeout:
        # `connect` also bounds the wait for a free connection to a preview that has PER_PREVIEW in use.
        return aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.read_timeout)

    async def close(self) -> None:
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
        host = URL(public_origin).raw_authority
        sent: CIMultiDict[str] = CIMultiDict(request.headers)
        for keep in filters:
            sent = CIMultiDict(keep(sent))
        headers = CIMultiDict(
            request_headers(sent.items(), client_ip=request.remote or "", proto=_proto(public_origin), host=host)
        )
        if _is_websocket(request):
            return await self._websocket(request, env, URL(origin + target, encoded=True), headers)
        body = request.content if request.body_exists else None
        try:
            async with self.session.request(
                request.method,
                URL(origin + target, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=self._timeout(),
            ) as answer:
                if answer.status < 200:  # a 101 to a request that asked for no upgrade (1xx before it are skipped)
                    answer.close()
                    return pages.upstream_error(
                        env, 502, f"answered {answer.status} to a request that asked for no new protocol"
                    )
                return await self._relay(request, answer, origin, public_origin)
        except aiohttp.ClientError as e:
            return self._error(env, e)
        except TimeoutError:
            return self._error(env, TimeoutError())

    async def _relay(
        self, request: web.Request, answer: aiohttp.ClientResponse, origin: str, public_origin: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        for name, value in response_headers(answer.headers.items()):
            if name.lower() == "location":
                value = rewrite_location(value, origin, public_origin)
            response.headers.add(name, value)
        await response.prepare(request)
        try:
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away: the upstream connection is closed, not reused
        except (aiohttp.ClientError, TimeoutError) as e:
            # The status is sent already: end the client's connection so it sees a cut answer, not a short one.
            log.info("%s: the upstream's answer broke off (%s)", request.host, type(e).__name__)
            if request.transport is not None:
                request.transport.close()
        return response

    def _error(self, env: Environment, error: BaseException) -> web.Response:
        """The page for a failed upstream request; a refused connection raises `Refused` with it instead."""
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return pages.upstream_error(
                env, 504, f"did not accept a connection within {self.connect_timeout:g} seconds"
            )
        if isinstance(error, TimeoutError):
            return pages.upstream_error(env, 504, f"did not answer within {self.read_timeout:g} seconds")
        if isinstance(error, aiohttp.ClientConnectorError):
            raise Refused(pages.upstream_error(env, 502, "refuses connections (it may be starting or have stopped)"))
        if isinstance(error, aiohttp.WSServerHandshakeError):
            return pages.upstream_error(env, 502, f"refused the WebSocket connection (status {error.status})")
        return pages.upstream_error(env, 502, "closed the connection without a complete answer")

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
