"""The preview gateway attacked at the HTTP layer (2026-12-01, the `smuggle` session): request smuggling and desync,
the reserved `/_ghapp/` prefix reached by other spellings, WebSocket upgrades past the guards, ghapp's own
credentials on every path to a preview, and a hostile preview's answers. Real ghapp (its gateway server, PostgreSQL,
the access and wake guards), real upstream servers, and raw bytes over asyncio streams wherever an HTTP client
would have normalised what is sent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets

import pytest
from aiohttp import web

from ghapp.core.access import SESSION_COOKIE
from ghapp.db import access as store
from ghapp.gateway.access import ACCESS, create_access_token
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.support import wait_for

REPO_ID = 1
USER_ID = 42
EXCHANGE_TIMEOUT = 15.0  # a bound on a hung exchange (a failure), never a measure


class Preview:
    """A preview that records every request it parses, with its headers, as its own HTTP server saw them."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.echo)
        self.port = 0

    async def echo(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            self.seen.append({"method": "WS", "path": request.raw_path, "headers": list(request.headers.items())})
            await ws.send_str("hello from the preview")
            await ws.close()
            return ws
        body = await request.read()
        self.seen.append(
            {"method": request.method, "path": request.raw_path, "headers": list(request.headers.items()), "body": body}
        )
        return web.json_response({"path": request.raw_path, "body": len(body)})

    @property
    def paths(self) -> list[str]:
        return [s["path"] for s in self.seen]


class RawPreview:
    """A preview as bytes: records everything each connection sends; answers each request head with `answer`."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        self.answer = answer
        self.received: list[bytes] = []  # per connection, everything it sent
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        index = len(self.received)
        self.received.append(b"")
        try:
            while chunk := await reader.read(65536):
                before = self.received[index]
                self.received[index] += chunk
                for _ in range(self.received[index].count(b"\r\n\r\n") - before.count(b"\r\n\r\n")):
                    writer.write(self.answer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    @property
    def everything(self) -> bytes:
        return b"".join(self.received)


@dataclasses.dataclass
class Stack:
    app: web.Application
    port: int  # the gateway's
    preview: Preview
    name: str  # a `repository` preview of acme/shop, served by `preview`
    public: str  # a `public` preview, served by `preview` too
    db: object
    raw_previews: list[RawPreview] = dataclasses.field(default_factory=list)

    @property
    def host(self) -> str:
        return f"{self.name}.localhost:8081"

    @property
    def public_host(self) -> str:
        return f"{self.public}.localhost:8081"

    async def session(self, host: str | None = None) -> str:
        """A signed-in reader's session cookie value for `host` (the repository preview's by default)."""
        session_id = secrets.token_urlsafe(32)
        person = store.Person((host or self.host).lower(), REPO_ID, USER_ID, "alice")
        async with self.db.acquire() as conn:
            await store.create_session(conn, session_id, person, 3600)
        self.app[ACCESS].decisions.put(USER_ID, REPO_ID, True)
        return session_id

    async def token(self) -> str:
        async with self.db.acquire() as conn:
            token, _ = await create_access_token(conn, "acme/shop")
        return token

    async def hostile(self, preview: RawPreview, access: str = "public") -> str:
        """A preview named `pr-9-shop-9` served by `preview`; its host."""
        port = await preview.start()
        self.raw_previews.append(preview)
        await add_environment(self.db, 9, f"http://127.0.0.1:{port}/", access)
        return "pr-9-shop-9.localhost:8081"

    async def exchange(self, data: bytes) -> bytes:
        """Raw bytes to the gateway; everything it answers until it closes the connection."""
        return await exchange(self.port, data)


async def exchange(port: int, data: bytes) -> bytes:
    """Everything the server at `port` answers to `data` until it closes the connection (`<HUNG>` appended if it
    has not closed it within EXCHANGE_TIMEOUT)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        got = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXCHANGE_TIMEOUT):
                while chunk := await reader.read(65536):
                    got += chunk
                return got
        return got + b"<HUNG>"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 answers in `raw`, in order: (status, headers with lower-case names, body); a head alone has an
    empty body."""
    found = []
    while raw:
        head, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, f"an incomplete answer: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not raw:
            body = b""
        elif "content-length" in headers:
            length = int(headers["content-length"])
            body, raw = raw[:length], raw[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line, _, raw = raw.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, raw = body + raw[:size], raw[size + 2 :]
                if size == 0:
                    break
        elif status in (101, 204, 304) or 100 <= status < 200:
            body = b""
        else:
            body, raw = raw, b""
        found.append((status, headers, body))
    return found


@pytest.fixture
async def stack(settings, aiohttp_client, aiohttp_server, db):
    preview = Preview()
    preview.port = (await aiohttp_server(preview.app)).port
    app = create_app(
        settings.replace(
            gateway_port=0, preview_domain="localhost:8081", client_id="Iv1.attack", client_secret="attack-secret"
        ),
        workers=False,
        gateway=True,
    )
    await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    private = await add_environment(db, 7, f"http://127.0.0.1:{preview.port}/", "repository")
    public = await add_environment(db, 8, f"http://127.0.0.1:{preview.port}/", "public")
    stack = Stack(app, app[keys.GATEWAY].port, preview, private, public, db)
    yield stack
    for raw in stack.raw_previews:
        await raw.close()


async def add_environment(db, number: int, preview_url: str, access: str, status: str = "active") -> str:
    name = f"pr-{number}-shop-{number}"
    await db.execute(
        """INSERT INTO environments (repo_id, repository, pr_number, name, desired, desired_sha, status,
                                     observed_generation, provisioned, deployed_sha, preview_url, access,
                                     desired_sleeping)
           VALUES ($1, 'acme/shop', $2, $3, 'present', 'abcdef1234', $4, 1, true, 'abcdef1234', $5, $6, $4 = 'sleeping')""",
        REPO_ID,
        number,
        name,
        status,
        preview_url,
        access,
    )
    return name


async def _ready(app: web.Application) -> bool:
    return app[keys.READY].is_set()


def request(method: str, path: str, host: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", f"Host: {host}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def seen_anywhere(preview: Preview | RawPreview, secret: str) -> bool:
    """Whether the preview received `secret` in any request (head or body)."""
    if isinstance(preview, RawPreview):
        return secret.encode() in preview.everything
    return any(secret in repr(s) for s in preview.seen)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"  # an answer nobody asked for

# Framing two parsers could read differently: the gateway's parser (llhttp) refuses each with 400 before any guard
# or preview sees it.
AMBIGUOUS = {
    "Transfer-Encoding and Content-Length": lambda h: request(
        "POST",
        "/a",
        h,
        f"Content-Length: {5 + len(SMUGGLED)}",
        "Transfer-Encoding: chunked",
        body=b"0\r\n\r\n" + SMUGGLED,
    ),
    "chunked, then another coding": lambda h: request(
        "POST", "/a", h, "Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n" + SMUGGLED
    ),
    "an unknown coding alone": lambda h: request("POST", "/a", h, "Transfer-Encoding: gzip", body=SMUGGLED),
    "obs-fold continuation": lambda h: request(
        "POST", "/a", h, "X-A: 1", " Transfer-Encoding: chunked", "Content-Length: 5", body=b"0\r\n\r\n" + SMUGGLED
    ),
    "two Content-Lengths": lambda h: request("POST", "/a", h, "Content-Length: 0", "Content-Length: 40", body=SMUGGLED),
    "the same Content-Length twice": lambda h: request(
        "POST", "/a", h, "Content-Length: 0", "Content-Length: 0", body=SMUGGLED
    ),
    "a Content-Length list": lambda h: request("POST", "/a", h, "Content-Length: 0, 0", body=SMUGGLED),
    "a space before the colon": lambda h: request(
        "POST", "/a", h, "Transfer-Encoding : chunked", "Content-Length: 0", body=b"0\r\n\r\n" + SMUGGLED
    ),
    "bare LF line ends": lambda h: f"GET /a HTTP/1.1\nHost: {h}\n\n".encode() + SMUGGLED,
    "a bare LF inside the head": lambda h: f"GET /a HTTP/1.1\r\nHost: {h}\nX: y\r\n\r\n".encode() + SMUGGLED,
    "two Host headers": lambda h: request("GET", "/a", h, "Host: pr-7-shop-7.localhost:8081") + SMUGGLED,
    "a signed Content-Length": lambda h: request("POST", "/a", h, "Content-Length: +40", body=SMUGGLED),
    "a negative Content-Length": lambda h: request("POST", "/a", h, "Content-Length: -1", body=SMUGGLED),
    "a coding that only contains chunked": lambda h: request(
        "POST", "/a", h, "Transfer-Encoding: xchunked", "Content-Length: 0", body=SMUGGLED
    ),
    "a vertical tab after chunked": lambda h: request(
        "POST", "/a", h, "Transfer-Encoding: chunked\x0b", "Content-Length: 0", body=SMUGGLED
    ),
    "a NUL in a header": lambda h: request("GET", "/a", h, "X-A: a\x00b") + SMUGGLED,
    "a chunk size with junk": lambda h: request(
        "POST", "/a", h, "Transfer-Encoding: chunked", body=b"0x5\r\nhello\r\n0\r\n\r\n" + SMUGGLED
    ),
}


@pytest.mark.parametrize("attack", list(AMBIGUOUS))
async def test_ambiguous_framing_is_refused_before_anything_reaches_a_preview(stack, attack):
    raw = await stack.exchange(AMBIGUOUS[attack](stack.public_host))
    assert raw.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400", b"HTTP/1.1 501")), raw[:200]
    assert stack.preview.seen == []


async def test_a_coding_list_ending_in_chunked_is_one_body_to_the_preview(stack):
    """`identity, chunked` is read as chunked (its last coding decides the framing): one request, its body exact."""
    raw = await stack.exchange(
        request(
            "POST", "/a", stack.public_host, "Transfer-Encoding: identity, chunked", body=b"5\r\nhello\r\n0\r\n\r\n"
        )
        + request("GET", "/b", stack.public_host, "Connection: close")
    )
    assert [status for status, _h, _b in responses(raw)] == [200, 200]
    assert [(s["method"], s["path"], s["body"]) for s in stack.preview.seen] == [
        ("POST", "/a", b"hello"),
        ("GET", "/b", b""),
    ]


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(
            lambda h: request("POST", "/a", h, f"Content-Length: {len(SMUGGLED)}", body=SMUGGLED), id="length"
        ),
        pytest.param(
            lambda h: request(
                "POST", "/a", h, "Transfer-Encoding: chunked", body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
            ),
            id="chunked",
        ),
        pytest.param(
            lambda h: (
                request(
                    "GET",
                    "/a",
                    h,
                    "Connection: Upgrade",
                    "Upgrade: websocket",
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                )
                + SMUGGLED
            ),
            id="websocket",
        ),
        pytest.param(lambda h: request("POST", "/a", h, "Connection: Upgrade", "Upgrade: h2c") + SMUGGLED, id="h2c"),
    ],
)
async def test_after_a_refused_request_nothing_on_the_connection_reaches_the_preview(stack, first):
    """Pipelined after a request the access guard refused: neither the refused request's body nor the next request
    (no credentials either) reaches a `repository` preview."""
    raw = await stack.exchange(first(stack.host) + request("GET", "/next", stack.host, "Connection: close"))
    statuses = [status for status, _h, _b in responses(raw)]
    assert statuses and set(statuses) <= {401, 404}, raw[:300]  # 404: the smuggled `Host: x` names no preview
    assert stack.preview.seen == []


async def test_an_upgrade_the_gateway_does_not_bridge_ends_the_connection_after_its_answer(stack):
    """`Upgrade: h2c` (curl --http2 on http://) or any other protocol but WebSocket: the gateway answers the request
    itself as HTTP/1.1 and, as its parser takes the rest of the connection for the new protocol, says
    `Connection: close` and closes it at once, instead of leaving the client waiting on bytes it will never read."""
    raw = await stack.exchange(
        request(
            "GET",
            "/a",
            stack.public_host,
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
        )
        + request("GET", "/next", stack.public_host)
    )
    assert not raw.endswith(b"<HUNG>"), raw[-300:]
    ((status, headers, body),) = responses(raw)
    assert status == 200 and headers.get("connection", "").lower() == "close"
    assert [(s["method"], s["path"]) for s in stack.preview.seen] == [("GET", "/a")]
    assert "Upgrade" not in dict(stack.preview.seen[0]["headers"])


async def test_an_absolute_request_target_names_the_preview_that_decides(stack):
    """`GET http://<repository preview>/ HTTP/1.1` sent with a public preview's Host: the target's host is the one
    routed to and the one whose guard decides (never a public Host's verdict applied to another preview)."""
    raw = await stack.exchange(request("GET", f"http://{stack.host}/abs", stack.public_host, "Connection: close"))
    assert [status for status, _h, _b in responses(raw)] == [401]
    raw = await stack.exchange(request("GET", "http://elsewhere.example/abs", stack.public_host, "Connection: close"))
    assert [status for status, _h, _b in responses(raw)] == [404]
    assert stack.preview.seen == []


@pytest.mark.parametrize(
    "spelled", ["evil@{host}", "{host}@evil.example", "{host}:8081:1", "{host}:+8081", "{host}%00", "{host} x"]
)
async def test_a_host_with_userinfo_or_port_tricks_names_no_preview(stack, spelled):
    raw = await stack.exchange(request("GET", "/a", spelled.format(host=stack.public), "Connection: close"))
    assert raw.startswith((b"HTTP/1.1 404", b"HTTP/1.0 400", b"HTTP/1.1 400")), raw[:200]
    assert stack.preview.seen == []


async def test_http_1_0_keep_alive_is_one_request_at_a_time_each_judged_alone(stack):
    cookie = await stack.session()
    raw = await stack.exchange(
        request(
            "GET", "/one", stack.host, "Connection: keep-alive", f"Cookie: {SESSION_COOKIE}={cookie}", version="1.0"
        )
        + request("GET", "/two", stack.host, version="1.0")
    )
    assert [status for status, _h, _b in responses(raw)] == [200, 401]
    assert stack.preview.paths == ["/one"]


@pytest.mark.parametrize(
    "path",
    [
        "//_ghapp/signin",
        "/./_ghapp/signin",
        "/x/../_ghapp/signin",
        "/_ghapp/./signin",
        "/%2e/_ghapp/signin",
        "/_GHAPP/signin",
        "/_ghapp/other",
        "///_ghapp//session?ticket=x",
    ],
)
async def test_no_spelling_of_the_reserved_prefix_reaches_the_preview(stack, path):
    """ghapp's pages under `/_ghapp/` (sign-in, session) are ghapp's on every preview host: a path that a preview's
    router would read as one of them (slashes merged, dot segments, case) is answered by ghapp, never proxied, so a
    preview cannot put its own page where people and links expect ghapp's."""
    raw = await stack.exchange(request("GET", path, stack.public_host, "Connection: close"))
    ((status, headers, _body),) = responses(raw)
    assert status in (302, 400, 404), raw[:300]
    assert stack.preview.seen == []


async def test_the_encoded_reserved_prefix_is_ghapps_page(stack):
    raw = await stack.exchange(request("GET", "/%5Fghapp/signin", stack.host, "Connection: close"))
    ((status, headers, _body),) = responses(raw)
    assert status == 302 and "/gateway/sign-in?" in headers["location"]
    assert stack.preview.seen == []


def websocket(path: str, host: str, *headers: str, method: str = "GET") -> bytes:
    return request(
        method,
        path,
        host,
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        *headers,
    )


async def test_a_websocket_to_a_repository_preview_needs_credentials_like_any_request(stack):
    raw = await stack.exchange(websocket("/ws", stack.host))
    assert raw.startswith(b"HTTP/1.1 401"), raw[:200]
    assert stack.preview.seen == []


async def test_a_websocket_to_a_sleeping_repository_preview_without_credentials_neither_opens_nor_wakes_it(stack, db):
    name = await add_environment(db, 10, f"http://127.0.0.1:{stack.preview.port}/", "repository", status="sleeping")
    raw = await stack.exchange(websocket("/ws", f"{name}.localhost:8081"))
    assert raw.startswith(b"HTTP/1.1 401"), raw[:200]
    row = await db.fetchrow("SELECT desired_sleeping, wake_requested_at FROM environments WHERE name = $1", name)
    assert row["desired_sleeping"] and row["wake_requested_at"] is None
    assert stack.preview.seen == []


async def test_an_upgrade_on_a_non_get_is_a_plain_request_without_upgrade(stack):
    raw = await stack.exchange(websocket("/ws", stack.public_host, "Content-Length: 0", method="POST"))
    ((status, headers, _body),) = responses(raw)
    assert status == 200
    assert [(s["method"], s["path"]) for s in stack.preview.seen] == [("POST", "/ws")]
    assert "Upgrade" not in dict(stack.preview.seen[0]["headers"])


async def cookie_headers(stack: Stack, session: str) -> list[str]:
    """ghapp's session among other cookies, in every spelling a client may send: several Cookie headers, names in
    other cases, no spaces, the session repeated."""
    return [
        f"Cookie: theme=dark; {SESSION_COOKIE}={session}",
        f"cookie: {SESSION_COOKIE}={session};lang=en",
        f"COOKIE: a=1;{SESSION_COOKIE}={session} ; __Host-{SESSION_COOKIE}={session}",
    ]


async def test_ghapps_session_and_token_never_reach_the_preview_over_http(stack):
    session = await stack.session()
    token = await stack.token()
    raw = await stack.exchange(
        request("GET", "/cookies", stack.host, *await cookie_headers(stack, session))
        + request("GET", "/bearer", stack.host, f"Authorization: Bearer {token}", f"authorization: bearer {token}")
        + request(
            "GET",
            "/header",
            stack.host,
            f"X-Ghapp-Access-Token: {token}",
            f"x-ghapp-access-token: {token}",
            "Connection: close",
        )
    )
    assert [status for status, _h, _b in responses(raw)] == [200, 200, 200]
    assert stack.preview.paths == ["/cookies", "/bearer", "/header"]
    assert not seen_anywhere(stack.preview, session) and not seen_anywhere(stack.preview, token)
    assert "theme=dark" in repr(stack.preview.seen[0]) and "lang=en" in repr(stack.preview.seen[0])


async def test_ghapps_session_and_token_never_reach_the_preview_over_a_websocket(stack):
    session = await stack.session()
    token = await stack.token()
    for credentials in (await cookie_headers(stack, session), [f"Authorization: Bearer {token}"]):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write(websocket("/ws", stack.host, *credentials))
        raw = await asyncio.wait_for(reader.readuntil(b"hello from the preview"), EXCHANGE_TIMEOUT)
        writer.close()
        assert raw.startswith(b"HTTP/1.1 101"), raw[:300]
    assert [s["method"] for s in stack.preview.seen] == ["WS", "WS"]
    assert not seen_anywhere(stack.preview, session) and not seen_anywhere(stack.preview, token)


async def test_ghapps_session_never_reaches_a_preview_woken_by_the_request(stack, db):
    name = await add_environment(db, 11, f"http://127.0.0.1:{stack.preview.port}/", "repository", status="sleeping")
    host = f"{name}.localhost:8081"
    session = await stack.session(host)
    held = asyncio.create_task(
        stack.exchange(request("GET", "/woken", host, *await cookie_headers(stack, session), "Connection: close"))
    )
    await wait_for(lambda: _wake_asked(db, name), what="the wake asked for")
    await db.execute("UPDATE environments SET status = 'active' WHERE name = $1", name)
    raw = await held
    assert [status for status, _h, _b in responses(raw)] == [200]
    assert stack.preview.paths == ["/woken"] and not seen_anywhere(stack.preview, session)


async def _wake_asked(db, name: str) -> bool:
    return await db.fetchval("SELECT NOT desired_sleeping FROM environments WHERE name = $1", name)


async def test_connection_cannot_strip_what_the_gateway_states(stack):
    """`Connection: X-Forwarded-For, ...` names headers to drop at this hop: the client's own are dropped, the
    gateway's are set after, so the preview always gets them."""
    raw = await stack.exchange(
        request(
            "GET",
            "/a",
            stack.public_host,
            "Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, close",
            "X-Forwarded-For: 6.6.6.6",
        )
    )
    assert [status for status, _h, _b in responses(raw)] == [200]
    headers = dict(stack.preview.seen[0]["headers"])
    assert headers["X-Forwarded-For"] == "127.0.0.1" and headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == stack.public_host


# A hostile preview's answers


async def test_a_preview_cannot_set_or_clear_ghapps_own_cookies(stack):
    """A preview's `Set-Cookie` for ghapp's session cookie (HttpOnly, so its scripts cannot touch it) would replace
    or end a visitor's session with ghapp: the gateway drops it; the preview's own cookies pass."""
    hostile = RawPreview(
        b"HTTP/1.1 200 OK\r\n"
        + f"Set-Cookie: {SESSION_COOKIE}=planted; Path=/; HttpOnly\r\n".encode()
        + f"set-cookie: __Host-{SESSION_COOKIE}=planted; Path=/; Secure; HttpOnly\r\n".encode()
        + f"Set-Cookie:  {SESSION_COOKIE} =; Max-Age=0\r\n".encode()
        + b"Set-Cookie: cart=3; Path=/\r\nContent-Length: 2\r\n\r\nok"
    )
    host = await stack.hostile(hostile)
    raw = await stack.exchange(request("GET", "/", host, "Connection: close"))
    ((status, _headers, _body),) = responses(raw)
    cookies = [line for line in raw.split(b"\r\n") if line.lower().startswith(b"set-cookie")]
    assert status == 200 and cookies == [b"Set-Cookie: cart=3; Path=/"]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A: 1\rSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok", id="bare CR"),
        pytest.param(b"HTTP/1.1 200 OK\rSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok", id="CR in the status line"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 4000) for i in range(2000))
            + b"Content-Length: 2\r\n\r\nok",
            id="8 MB of headers",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 100_000 + b"\r\nContent-Length: 2\r\n\r\nok", id="long"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            id="both framings",
        ),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n" + SMUGGLED,
            id="101 to a plain request",
        ),
    ],
)
async def test_a_malformed_or_oversized_answer_is_a_502_page(stack, answer):
    host = await stack.hostile(RawPreview(answer))
    raw = await stack.exchange(request("GET", "/", host, "Connection: close"))
    ((status, headers, body),) = responses(raw)
    assert status == 502 and b"is not answering" in body
    assert "set-cookie" not in headers and "x-long" not in headers


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + POISON),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"),
        ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nPOISON"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\n" + POISON),
    ],
    ids=["past Content-Length", "a body to HEAD", "a body to 204", "an answer after 304"],
)
async def test_a_preview_answering_more_than_it_was_asked_cannot_answer_the_next_request(stack, method, answer):
    """Bytes a preview sends beyond its answer (a second, unasked answer) never become the answer to the next
    request on the same upstream connection: response-queue poisoning."""
    host = await stack.hostile(RawPreview(answer))
    raw = await stack.exchange(
        request(method, "/a", host) + request(method, "/b", host) + request(method, "/c", host, "Connection: close")
    )
    assert b"POISON" not in raw and raw.count(b"HTTP/1.1 ") == 3, raw[:500]


async def test_a_flood_of_informational_answers_ends_in_the_real_one(stack):
    hostile = RawPreview(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" * 2000
        + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    host = await stack.hostile(hostile)
    raw = await stack.exchange(request("GET", "/", host, "Connection: close"))
    assert [(s, b) for s, _h, b in responses(raw)] == [(200, b"ok")]


async def test_an_endless_answer_stops_when_the_visitor_leaves(stack):
    """A preview that never stops sending: the gateway streams it with backpressure, and when the visitor closes its
    connection, the gateway closes the preview's (which the preview sees as a failed write)."""
    ended = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            ended.set()
        finally:
            writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    name = await add_environment(stack.db, 12, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", "public")
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(request("GET", "/", f"{name}.localhost:8081"))
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await reader.readexactly(1_000_000)
    writer.close()
    await asyncio.wait_for(ended.wait(), EXCHANGE_TIMEOUT)
    server.close()
    await server.wait_closed()


async def test_a_refused_upload_is_never_told_to_continue(stack):
    """`Expect: 100-continue`: the gateway says `100 Continue` only once the guards let the request through, so a
    refused client never sends its body (a 100 MB upload to a preview it may not see), and the refusal ends the
    connection, whose unsent body would otherwise be read as the next request's bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(request("POST", "/upload", stack.host, "Expect: 100-continue", f"Content-Length: {100 * 1024**2}"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EXCHANGE_TIMEOUT)
    ((status, headers, _body),) = responses(
        head + await reader.readexactly(int(responses(head)[0][1]["content-length"]))
    )
    writer.close()
    assert status == 401 and headers["connection"] == "close"  # its body, if it comes anyway, is read and dropped
    assert stack.preview.seen == []

    cookie = await stack.session()
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    writer.write(
        request(
            "POST",
            "/upload",
            stack.host,
            "Expect: 100-continue",
            "Content-Length: 5",
            f"Cookie: {SESSION_COOKIE}={cookie}",
            "Connection: close",
        )
    )
    continued = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EXCHANGE_TIMEOUT)
    assert continued == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    raw = await asyncio.wait_for(reader.read(), EXCHANGE_TIMEOUT)
    writer.close()
    assert [status for status, _h, _b in responses(raw)] == [200]
    assert [(s["path"], s["body"]) for s in stack.preview.seen] == [("/upload", b"hello")]
