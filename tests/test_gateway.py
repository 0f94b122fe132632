"""The preview gateway over real HTTP: a real ghapp (PostgreSQL, the gateway's own server) in front of real
upstream servers. Routing by host, streaming both ways, WebSockets, error pages, hop-by-hop and X-Forwarded-*
headers, header injection attempts, keep-alive reuse, guards, `/_ghapp/` pages and batched activity."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import re
import socket

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from ghapp.gateway import app as preview_gateway
from ghapp.gateway.keys import ENVIRONMENT
from ghapp.gateway.wake import MARKER
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.support import free_port, ready, wait_for


class Upstream:
    """A preview: records what it receives, answers what the tests ask for."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.peers: list[int] = []
        self.received = 0  # bytes of the streamed upload so far
        self.release = asyncio.Event()
        self.ws_closed_with: list[int | None] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/echo{rest:.*}", self.echo)
        self.app.router.add_post("/upload", self.upload)
        self.app.router.add_get("/download", self.download)
        self.app.router.add_get("/redirect/{to}", self.redirect)
        self.app.router.add_get("/hop", self.hop)
        self.app.router.add_get("/slow", self.slow)
        self.app.router.add_get("/cut", self.cut)
        self.app.router.add_get("/ws", self.websocket)
        self.app.router.add_get("/gzip", self.gzipped)
        self.app.router.add_get("/status/{code}", self.status)
        self.port = 0

    def record(self, request: web.Request) -> None:
        self.seen.append({"method": request.method, "path": request.raw_path, "headers": list(request.headers.items())})
        self.peers.append(request.transport.get_extra_info("peername")[1])

    async def echo(self, request: web.Request) -> web.Response:
        self.record(request)
        body = await request.read()
        return web.json_response({"path": request.raw_path, "length": len(body), "headers": dict(request.headers)})

    async def upload(self, request: web.Request) -> web.Response:
        self.record(request)
        async for chunk in request.content.iter_any():
            self.received += len(chunk)
        return web.json_response({"received": self.received})

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"first")
        await self.release.wait()  # the test has read "first" through the gateway before this
        await response.write(b"second")
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        to = {
            "self": f"http://127.0.0.1:{self.port}/landing?x=1",
            "away": "https://github.com/login?return_to=%2F",
            "relative": "/landing",
            "reflect": "/landing" + request.raw_path.partition("?")[2],  # as sent: still percent-encoded
        }[request.match_info["to"]]
        return web.Response(status=302, headers={"Location": to})

    async def hop(self, request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            headers={
                "Connection": "X-Hop-Secret",
                "X-Hop-Secret": "1",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic",
                "X-Kept": "1",
                "Set-Cookie": "a=1",
            },
        )

    async def gzipped(self, request: web.Request) -> web.Response:
        body = gzip.compress(b"compressed " * 1000)
        response = web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/")
        return response

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, headers={"ETag": '"v1"'}, body=None if code in (204, 304) else b"body")

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    async def cut(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("when") == "before":
            request.transport.close()
            await asyncio.sleep(1)
            return web.Response()
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        request.transport.close()
        return response

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        self.record(request)
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT and message.data == "close-me":
                await ws.close(code=4002, message=b"bye from upstream")
            elif message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"echo:{message.data}")
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        self.ws_closed_with.append(ws.close_code)
        return ws


@pytest.fixture
async def upstream(aiohttp_server) -> Upstream:
    preview = Upstream()
    server = await aiohttp_server(preview.app)
    preview.port = server.port
    return preview


@pytest.fixture
def start_gateway(settings, aiohttp_client):
    """ghapp with the gateway on a free port; `hooks(gateway)` runs before it starts. Returns (client, gateway)."""

    async def start(hooks=None, **changes):
        # published at :8081 (what the requests' Host says), listening on a free port
        changes = {"preview_domain": "localhost:8081", **changes}
        app = create_app(settings.replace(gateway_port=0, **changes), workers=False, gateway=True)
        if hooks:
            hooks(app[keys.GATEWAY])
        client = await aiohttp_client(app)
        await wait_for(lambda: _ready(app), what="migrations")
        return client, app[keys.GATEWAY]

    return start


async def _ready(app):
    return app[keys.READY].is_set()


async def add_preview(db, number: int, preview_url: str | None, status: str = "active") -> str:
    name = f"pr-{number}-shop-{number}"
    await db.execute(
        """INSERT INTO environments (repo_id, repository, pr_number, name, desired, desired_sha, status,
                                     observed_generation, provisioned, deployed_sha, preview_url)
           VALUES (1, 'acme/shop', $1, $2, 'present', 'abcdef1234', $3, 1, true, 'abcdef1234', $4)""",
        number,
        name,
        status,
        preview_url,
    )
    return name


def host(name: str) -> str:
    return f"{name}.localhost:8081"


class Client:
    """Requests to the gateway with a preview's Host header (the test machine need not resolve *.localhost)."""

    def __init__(self, session: aiohttp.ClientSession, port: int, name: str) -> None:
        self.session, self.base, self.host = session, f"http://127.0.0.1:{port}", host(name)

    def request(self, method: str, path: str, **kwargs):
        headers = {"Host": self.host, **kwargs.pop("headers", {})}
        return self.session.request(method, self.base + path, headers=headers, allow_redirects=False, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


async def test_routes_by_host_to_each_previews_own_upstream(start_gateway, db, aiohttp_server, session):
    first, second = Upstream(), Upstream()
    for preview in (first, second):
        preview.port = (await aiohttp_server(preview.app)).port
    _client, gateway = await start_gateway()
    one = await add_preview(db, 1, f"http://127.0.0.1:{first.port}/")
    two = await add_preview(db, 2, f"http://127.0.0.1:{second.port}/")

    async with Client(session, gateway.port, one).get("/echo/a?b=1") as r:
        assert r.status == 200 and (await r.json())["path"] == "/echo/a?b=1"
    async with Client(session, gateway.port, two).get("/echo/c") as r:
        assert r.status == 200
    assert [s["path"] for s in first.seen] == ["/echo/a?b=1"]
    assert [s["path"] for s in second.seen] == ["/echo/c"]


async def test_unknown_hosts_and_previews_not_active_get_a_clear_page(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    deploying = await add_preview(db, 3, None, status="creating")
    destroyed = await add_preview(db, 4, f"http://127.0.0.1:{upstream.port}/", status="destroyed")
    not_http = await add_preview(db, 5, "file:///etc/passwd")

    for name in ("pr-9-nothing-9", "<script>alert(1)</script>"):
        async with Client(session, gateway.port, name).get("/") as r:
            text = await r.text()
            assert r.status == 404 and "is not the address of a preview" in text
            assert "<script>alert" not in text
    async with session.get(f"http://127.0.0.1:{gateway.port}/", headers={"Host": "example.com"}) as r:
        assert r.status == 404
    async with Client(session, gateway.port, deploying).get("/") as r:
        assert r.status == 503 and r.headers["Retry-After"] == "5"
        assert "acme/shop#3 is being deployed" in await r.text()
    async with Client(session, gateway.port, destroyed).get("/echo") as r:
        assert r.status == 404 and "was destroyed" in await r.text()
    async with Client(session, gateway.port, not_http).get("/") as r:
        assert r.status == 502 and "no http(s) address" in await r.text()
    assert upstream.seen == []


async def test_request_body_is_streamed_to_the_upstream_as_it_comes(start_gateway, db, upstream, session):
    """Each megabyte must reach the upstream before the client sends the next: a gateway that buffered the body
    would never pass the first wait. Eight megabytes is more than any buffer on the way."""
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    chunk = b"u" * (1024 * 1024)

    async def body():
        for i in range(8):
            yield chunk
            await wait_for(lambda: _at_least(upstream, (i + 1) * len(chunk)), what=f"megabyte {i + 1} upstream")

    async with Client(session, gateway.port, name).request("POST", "/upload", data=body()) as r:
        assert r.status == 200 and (await r.json())["received"] == 8 * len(chunk)
    headers = dict(upstream.seen[-1]["headers"])
    assert headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers


async def _at_least(upstream: Upstream, size: int) -> bool:
    return upstream.received >= size


async def test_a_body_of_known_length_keeps_its_content_length(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    async with Client(session, gateway.port, name).request("PUT", "/echo", data=b"x" * 100_000) as r:
        answer = await r.json()
    assert answer["length"] == 100_000
    assert answer["headers"]["Content-Length"] == "100000" and "Transfer-Encoding" not in answer["headers"]


async def test_response_body_is_streamed_to_the_client_as_it_comes(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    async with Client(session, gateway.port, name).get("/download") as r:
        assert await r.content.readexactly(5) == b"first"  # the upstream is still waiting to send the rest
        upstream.release.set()
        assert await r.read() == b"second"


async def test_websockets_both_ways_with_subprotocol_and_close_codes(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    url = f"http://127.0.0.1:{gateway.port}/ws"
    async with session.ws_connect(url, headers={"Host": host(name)}, protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        await ws.send_str("hello")
        assert await ws.receive_str() == "echo:hello"
        await ws.send_bytes(b"\x00\x01\x02")
        assert await ws.receive_bytes() == b"\x02\x01\x00"
        await ws.close(code=4001, message=b"bye from client")
    await wait_for(lambda: _closed(upstream), what="the upstream's side closed")
    assert upstream.ws_closed_with == [4001]

    async with session.ws_connect(url, headers={"Host": host(name)}) as ws:
        await ws.send_str("close-me")
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert (message.data, message.extra) == (4002, "bye from upstream")
    seen = dict(upstream.seen[-1]["headers"])
    assert seen["X-Forwarded-Host"] == URL(gateway.url(name)).raw_authority and seen["Upgrade"].lower() == "websocket"


async def _closed(upstream: Upstream) -> bool:
    return bool(upstream.ws_closed_with)


async def test_a_preview_put_to_sleep_a_moment_ago_wakes_instead_of_refusing(
    start_gateway, db, aiohttp_server, session, monkeypatch
):
    """The gateway remembers a preview's row for a moment; one put to sleep since refuses connections. Nothing was
    sent, so the gateway looks again and the wake guard answers (a browser: the waking page), not a 502."""
    monkeypatch.setattr(preview_gateway, "LOOKUP_TTL", 3600.0)  # the stale row stays cached for the whole test
    preview = Upstream()
    server = await aiohttp_server(preview.app)
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{server.port}/")
    async with Client(session, gateway.port, name).get("/echo") as r:
        assert r.status == 200

    await server.close()  # asleep: its process stopped, the row says so
    await db.execute("UPDATE environments SET status = 'sleeping', desired_sleeping = true")
    async with Client(session, gateway.port, name).get("/", headers={"Accept": "text/html"}) as r:
        assert r.status == 503 and r.headers[MARKER] == "waking", await r.text()
    assert await db.fetchval("SELECT wake_requested_at IS NOT NULL AND NOT desired_sleeping FROM environments")


async def test_upstream_errors_are_clear_pages(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    refused = await add_preview(db, 1, f"http://127.0.0.1:{free_port()}/")
    name = await add_preview(db, 2, f"http://127.0.0.1:{upstream.port}/")
    async with Client(session, gateway.port, refused).get("/") as r:
        text = await r.text()
        assert r.status == 502 and "refuses connections" in text and "acme/shop#1" in text
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    async with Client(session, gateway.port, name).get("/cut?when=before") as r:
        assert r.status == 502 and "closed the connection" in await r.text()

    gateway.upstream.read_timeout = 0.3
    async with Client(session, gateway.port, name).get("/slow") as r:
        assert r.status == 504 and "did not answer within 0.3 seconds" in await r.text()

    async with Client(session, gateway.port, name).get("/cut?when=during") as r:
        assert r.status == 200  # sent before the upstream broke off: the client sees a cut body, not a short one
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()


async def test_hop_by_hop_headers_are_removed_both_ways(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    sent = {
        "Connection": "keep-alive, X-Client-Hop",
        "X-Client-Hop": "secret",
        "Keep-Alive": "300",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-End-To-End": "kept",
    }
    async with Client(session, gateway.port, name).get("/echo", headers=sent) as r:
        seen = (await r.json())["headers"]
    assert seen["X-End-To-End"] == "kept"
    for header in ("X-Client-Hop", "Keep-Alive", "TE", "Proxy-Authorization"):
        assert header not in seen, header
    assert "x-client-hop" not in seen.get("Connection", "").lower()

    async with Client(session, gateway.port, name).get("/hop") as r:
        assert r.headers["X-Kept"] == "1" and r.headers["Set-Cookie"] == "a=1"
        for header in ("X-Hop-Secret", "Keep-Alive", "Proxy-Authenticate"):
            assert header not in r.headers, header


async def test_answers_pass_as_the_preview_made_them(start_gateway, db, upstream, session):
    """Compressed bytes untouched, every Set-Cookie, and the answers without a body (HEAD, 204, 304)."""
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    preview = Client(session, gateway.port, name)
    async with preview.get("/gzip", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip" and r.headers.getall("Set-Cookie") == [
            "a=1; Path=/",
            "b=2; Path=/",
        ]
        assert gzip.decompress(await r.read()) == b"compressed " * 1000
    async with preview.request("HEAD", "/status/200") as r:
        assert (r.status, r.headers["Content-Length"], await r.read()) == (200, "4", b"")
    async with preview.get("/status/204") as r:
        assert (r.status, await r.read()) == (204, b"")
    async with preview.get("/status/304", headers={"If-None-Match": '"v1"'}) as r:
        assert (r.status, r.headers["ETag"], await r.read()) == (304, '"v1"', b"")
    async with preview.get("/status/418") as r:
        assert (r.status, await r.read()) == (418, b"body")  # the preview's own errors are its own, not pages


async def test_a_guard_may_hand_the_proxy_a_fresher_row_and_filters_decide_what_the_preview_sees(
    start_gateway, db, upstream, session
):
    async def woken(request, env):
        request[ENVIRONMENT] = dataclasses.replace(
            env, status="active", preview_url=f"http://127.0.0.1:{upstream.port}/"
        )
        return None

    def without_session(headers):
        return [(k, v) for k, v in headers.items() if k.lower() != "x-ghapp-session"]

    def hooks(gateway):
        gateway.guards.append(woken)
        gateway.request_filters.append(without_session)

    _client, gateway = await start_gateway(hooks)
    name = await add_preview(db, 1, None, status="sleeping")  # as looked up: asleep, no address
    async with Client(session, gateway.port, name).get("/echo", headers={"X-Ghapp-Session": "s3cret", "X-A": "1"}) as r:
        seen = (await r.json())["headers"]
    assert "X-Ghapp-Session" not in seen and seen["X-A"] == "1"


async def test_x_forwarded_headers_are_the_gateways_word_not_the_clients(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    claims = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=6.6.6.6;host=evil.example",
        "X-Real-IP": "6.6.6.6",
    }
    async with Client(session, gateway.port, name).get("/echo", headers=claims) as r:
        seen = (await r.json())["headers"]
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Host"] == URL(gateway.url(name)).raw_authority  # the preview's own, published host
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["Host"] == f"127.0.0.1:{upstream.port}"
    assert "Forwarded" not in seen and "X-Real-IP" not in seen
    assert [v for k, v in upstream.seen[-1]["headers"] if k.lower() == "x-forwarded-for"] == ["127.0.0.1"]


async def test_redirects_pass_untouched_unless_they_name_the_upstreams_own_address(
    start_gateway, db, upstream, session
):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    expected = {
        "self": f"http://{name}.localhost:8081/landing?x=1",  # the published port, not the one it listens on
        "away": "https://github.com/login?return_to=%2F",
        "relative": "/landing",
    }
    for to, location in expected.items():
        async with Client(session, gateway.port, name).get(f"/redirect/{to}") as r:
            assert (r.status, r.headers["Location"]) == (302, location)


async def test_header_injection_attempts_go_nowhere(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    # A CR/LF the upstream reflects into a header stays percent-encoded: no header of the attacker's.
    async with Client(session, gateway.port, name).get("/redirect/reflect?%0d%0aSet-Cookie:%20pwned=1") as r:
        assert "Set-Cookie" not in r.headers and "\r" not in r.headers["Location"]
        assert r.headers["Location"].lower() == "/landing%0d%0aset-cookie:%20pwned=1"

    # A preview that sends a bare CR inside a header (to smuggle a Set-Cookie past a lenient proxy) gets a 502.
    answer = b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: pwned=1\r\nContent-Length: 2\r\n\r\nok"
    async with _raw_upstream(answer) as hostile:
        await db.execute("UPDATE environments SET preview_url = $1", f"http://127.0.0.1:{hostile}/")
        gateway.forget(name)
        async with Client(session, gateway.port, name).get("/") as r:
            assert (r.status, "Set-Cookie" in r.headers) == (502, False)
    await db.execute("UPDATE environments SET preview_url = $1", f"http://127.0.0.1:{upstream.port}/")
    gateway.forget(name)

    # Raw CR or LF inside a header, or in the Host: refused before anything reaches the preview.
    for raw in (
        f"GET /echo HTTP/1.1\r\nHost: {host(name)}\r\nX-A: a\rSet-Cookie: pwned=1\r\n\r\n",
        f"GET /echo HTTP/1.1\r\nHost: {host(name)}\rX-Injected: 1\r\n\r\n",
    ):
        status = await _raw_status(gateway.port, raw)
        assert status == 400, raw
    # An absolute URL as the request target never chooses the upstream: it names a host (RFC 9112 3.2.2), which
    # is a preview's or nothing, and the preview's own address is used.
    seen = len(upstream.seen)
    status = await _raw_status(gateway.port, f"GET http://169.254.169.254/echo HTTP/1.1\r\nHost: {host(name)}\r\n\r\n")
    assert status == 404 and len(upstream.seen) == seen
    status = await _raw_status(gateway.port, f"GET http://{host(name)}/echo HTTP/1.1\r\nHost: {host(name)}\r\n\r\n")
    assert status == 200 and upstream.seen[-1]["path"] == "/echo"
    assert dict(upstream.seen[-1]["headers"])["Host"] == f"127.0.0.1:{upstream.port}"


@contextlib.asynccontextmanager
async def _raw_upstream(answer: bytes):
    """A preview that answers every request with `answer`, byte for byte; its port."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _raw_status(port: int, raw: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw.encode("latin-1"))
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    match = re.match(rb"HTTP/1\.[01] (\d{3})", line)
    assert match, line
    return int(match[1])


async def test_answers_the_preview_gets_wrong_are_a_502_page_and_its_framings_all_pass(start_gateway, db, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, "http://127.0.0.1:1/")

    async def through(answer: bytes, method: str = "GET") -> tuple[int, bytes]:
        async with _raw_upstream(answer) as port:
            await db.execute("UPDATE environments SET preview_url = $1", f"http://127.0.0.1:{port}/")
            gateway.forget(name)
            async with Client(session, gateway.port, name).request(method, "/") as r:
                return r.status, await r.read()

    oversized = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    status, body = await through(oversized)
    assert status == 502 and b"head is over 64 KiB" in body
    status, body = await through(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok")
    assert status == 502 and b"not valid HTTP/1.1" in body
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    assert await through(chunked) == (200, b"abcde")
    assert await through(b"HTTP/1.0 200 OK\r\n\r\nuntil the close") == (200, b"until the close")
    assert await through(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!") == (
        201,
        b"!",
    )


async def test_a_kept_alive_connection_the_preview_closed_is_retried_once_for_idempotent_requests(
    start_gateway, db, session
):
    """A preview whose keep-alive ran out closes the connection as the next request arrives: a GET goes again on a
    new connection; a POST (the preview may have acted on it) gets a 502 page."""
    seen: list[bytes] = []

    async def answers_once_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.transport.abort()

    server = await asyncio.start_server(answers_once_per_connection, "127.0.0.1", 0)
    async with server:
        _client, gateway = await start_gateway()
        name = await add_preview(db, 1, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
        preview = Client(session, gateway.port, name)
        for method, expected in (("GET", 200), ("GET", 200), ("POST", 502), ("POST", 200)):
            async with preview.request(method, "/") as r:
                assert r.status == expected, (method, await r.text())
                if expected == 502:
                    assert "closed the connection without an answer" in await r.text()
    # GET on a new connection, GET on it again (closed: sent again on a new one), POST there (closed: not again),
    # POST on a new connection.
    assert [h.split(b" ")[0] for h in seen] == [b"GET", b"GET", b"GET", b"POST", b"POST"]


async def test_upstream_connections_are_kept_alive_and_reused(start_gateway, db, upstream, session):
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    for i in range(10):
        async with Client(session, gateway.port, name).get(f"/echo/{i}") as r:
            assert r.status == 200
            await r.read()
    assert len(upstream.peers) == 10 and len(set(upstream.peers)) == 1, upstream.peers


async def test_guards_run_in_order_and_reserved_pages_are_served_on_preview_hosts(start_gateway, db, upstream, session):
    calls = []

    async def first(request, env):
        calls.append(("first", env.name))
        return web.Response(status=403, text="no") if request.path == "/echo/private" else None

    async def second(request, env):
        calls.append(("second", env.name))
        assert request.app[keys.SETTINGS].gateway_port == 0  # shared from the main application
        return None

    async def hello(request):
        assert request.app[keys.SETTINGS].gateway_port == 0  # shared here too
        return web.json_response({"environment": request[ENVIRONMENT].name})

    def hooks(gateway):
        gateway.guards.extend([first, second])
        gateway.reserved.router.add_get("/hello", hello)
        gateway.share(keys.SETTINGS)  # a guard reading request.app[KEY] finds the main application's

    _client, gateway = await start_gateway(hooks)
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    async with Client(session, gateway.port, name).get("/echo/private") as r:
        assert r.status == 403
    assert calls == [("first", name)] and upstream.seen == []
    async with Client(session, gateway.port, name).get("/echo/public") as r:
        assert r.status == 200
    assert calls[1:] == [("first", name), ("second", name)]
    async with Client(session, gateway.port, name).get("/_ghapp/hello") as r:
        assert await r.json() == {"environment": name}
    assert len(calls) == 3 and len(upstream.seen) == 1  # no guard, no proxy for ghapp's own pages
    async with Client(session, gateway.port, "pr-9-nothing-9").get("/_ghapp/hello") as r:
        assert r.status == 404


async def test_activity_is_written_in_one_batched_update_and_counted(start_gateway, db, aiohttp_server, session):
    first, second = Upstream(), Upstream()
    for preview in (first, second):
        preview.port = (await aiohttp_server(preview.app)).port
    client, gateway = await start_gateway()
    one = await add_preview(db, 1, f"http://127.0.0.1:{first.port}/")
    two = await add_preview(db, 2, f"http://127.0.0.1:{second.port}/")
    gateway.activity.every = 3600  # this test flushes by hand
    versions = dict(await db.fetch("SELECT name, version FROM environments"))
    for _ in range(10):
        for name in (one, two):
            async with Client(session, gateway.port, name).get("/echo") as r:
                assert r.status == 200
    async with Client(session, gateway.port, "pr-9-nothing-9").get("/") as r:
        assert r.status == 404
    assert await db.fetchval("SELECT count(*) FROM environments WHERE last_request_at IS NOT NULL") == 0
    assert gateway.activity.last_request(1) is not None

    assert await gateway.activity.flush(client.app[keys.POOL]) == 2
    assert gateway.activity.flushes == 1 and gateway.activity.last_request(1) is None
    rows = await db.fetch("SELECT name, version, last_request_at FROM environments")
    assert all(r["last_request_at"] is not None for r in rows)
    assert {r["name"]: r["version"] for r in rows} == versions  # activity is not a change to publish

    metrics = await (await client.get("/metrics")).text()
    assert 'ghapp_gateway_requests_total{code="200"} 20.0' in metrics
    assert 'ghapp_gateway_requests_total{code="404"} 1.0' in metrics


async def test_a_change_next_to_new_activity_still_gets_a_new_version(start_gateway, db):
    await start_gateway()  # migrated
    await add_preview(db, 1, "http://127.0.0.1:1/")
    before = await db.fetchval("SELECT version FROM environments")
    await db.execute("UPDATE environments SET last_request_at = now(), status = 'sleeping'")
    assert await db.fetchval("SELECT version FROM environments") > before


async def test_the_api_and_dashboard_show_the_gateway_url_next_to_the_modules_preview_url(start_gateway, db, upstream):
    client, _gateway = await start_gateway(preview_domain="preview.example.com", public_url="https://ghapp.example.com")
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    body = json.loads(await (await client.get("/api/environments")).text())["environments"][0]
    assert body["gateway_url"] == f"https://{name}.preview.example.com/"
    assert body["preview_url"] == f"http://127.0.0.1:{upstream.port}/"
    page = await (await client.get(f"/environments/{body['id']}")).text()
    assert f'<a href="https://{name}.preview.example.com/">' in page
    assert f"<code>http://127.0.0.1:{upstream.port}/</code>" in page  # the module's own address, not linked


async def test_ghapp_serve_listens_on_the_gateway_port_and_says_so_when_it_cannot(serve, session):
    proc = serve()
    gateway_port = int(proc.env["GHAPP_GATEWAY_PORT"])
    await wait_for(lambda: ready(proc), what="ghapp serve ready")
    async with session.get(f"http://127.0.0.1:{gateway_port}/", headers={"Host": "pr-9-x-9.localhost"}) as r:
        assert r.status == 404 and "is not the address of a preview" in await r.text()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        blocked = serve(GHAPP_GATEWAY_PORT=str(taken))
        await wait_for(lambda: _exited(blocked), what="ghapp serve refusing to start")
    assert blocked.proc.returncode == 2
    assert f"the preview gateway cannot listen on 127.0.0.1:{taken}" in blocked.log()


async def _exited(proc) -> bool:
    return proc.proc.poll() is not None


async def test_activity_is_flushed_every_few_seconds_and_at_shutdown(start_gateway, db, upstream, session):
    client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    async with Client(session, gateway.port, name).get("/echo") as r:
        assert r.status == 200
    await wait_for(lambda: _requested(db), what="the periodic flush (every 5 s)")

    await db.execute("UPDATE environments SET last_request_at = NULL")
    gateway.activity.every = 3600  # from the next pass on: only the shutdown flush can write it now
    async with Client(session, gateway.port, name).get("/echo") as r:
        assert r.status == 200
    env_id = await db.fetchval("SELECT id FROM environments")
    assert gateway.activity.last_request(env_id) is not None  # waiting for a flush
    await client.close()
    assert await _requested(db)


async def _requested(db) -> bool:
    return await db.fetchval("SELECT last_request_at IS NOT NULL FROM environments")


async def test_a_visitor_cannot_claim_to_be_a_signed_in_person(start_gateway, db, upstream, session):
    """Attacked on 2026-12-01: on Kubernetes the preview learns the signed-in login from `X-Ghapp-User` (ghapp's
    answer to the proxy's access check); ghapp's own gateway passed a visitor's `X-Ghapp-User: <anyone>` on as it
    came, so a preview trusting the header (as it may on Kubernetes) took the visitor for that person."""
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    claims = {"X-Ghapp-User": "octocat", "x-ghapp-user": "admin", "X-Kept": "1"}
    async with Client(session, gateway.port, name).get("/echo", headers=claims) as r:
        assert r.status == 200
        seen = (await r.json())["headers"]
    assert seen["X-Kept"] == "1"
    assert [k for k, _v in upstream.seen[-1]["headers"] if k.lower() == "x-ghapp-user"] == []


async def test_the_preview_is_told_its_own_host_however_the_visitor_spelled_it(start_gateway, db, upstream, session):
    """Attacked on 2026-12-01: a Host of another case or with a trailing dot names the preview (as it should), but
    was passed on as `X-Forwarded-Host`: a preview building absolute links from it (as frameworks do) put the
    visitor's spelling in its page, which a cache in front keyed by the canonical host served to everyone (web cache
    poisoning). The gateway states the preview's own host. Another port names no preview (core/gateway's one host
    rule): it is another origin."""
    _client, gateway = await start_gateway()
    name = await add_preview(db, 1, f"http://127.0.0.1:{upstream.port}/")
    for other in (f"{name}.localhost:1337", f"{name}.localhost"):
        async with session.get(f"http://127.0.0.1:{gateway.port}/echo", headers={"Host": other}) as r:
            assert r.status == 404, other
    for spelled in (f"{name.upper()}.LOCALHOST.:8081", f"{name}.localhost.:8081", f"{name}.localhost:08081"):
        async with session.get(
            f"http://127.0.0.1:{gateway.port}/echo", headers={"Host": spelled}, allow_redirects=False
        ) as r:
            assert r.status == 200, spelled
            seen = (await r.json())["headers"]
        assert seen["X-Forwarded-Host"] == f"{name}.localhost:8081" == URL(gateway.url(name)).raw_authority, spelled
