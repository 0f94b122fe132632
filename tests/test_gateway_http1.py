"""The gateway's HTTP/1.1 client (ghapp/gateway/http1.py) against upstreams that answer byte for byte what each test
writes: every way an answer's body is framed, the answers without a body, interim answers, malformed and oversized
answers, keep-alive reuse only after a complete answer, a kept-alive connection the upstream closed, timeouts,
flow control and the request's own framing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ghapp.gateway import http1
from tests.support import free_port, wait_for

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Scripted:
    """An upstream on a free port: `handler(reader, writer, n)` for its n-th connection (from 0); what each
    connection's requests looked like (head and body bytes) in `requests`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n, self.connections = self.connections, self.connections + 1
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self.handler(reader, writer, n)
        writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request head (and a Content-Length body); record and return it."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(h[15:]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:")), 0)
        raw = head + await reader.readexactly(length)
        self.requests.append(raw)
        return raw


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[Scripted]:
    upstream = Scripted(handler)
    upstream.server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    async with upstream.server:
        try:
            yield upstream
        finally:
            for writer in upstream.writers:
                writer.close()
            await asyncio.sleep(0)  # the handlers see their connections closed


def answering(*answers: bytes, then_close: bool = False) -> Callable[[Scripted], Handler]:
    """Each request on a connection gets the next of `answers` (the same list on every connection)."""

    def make(upstream: Scripted) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
            for answer in answers:
                await upstream.request(reader)
                writer.write(answer)
                await writer.drain()
            if not then_close:
                await reader.read()  # until the client closes

        return handler

    return make


@contextlib.asynccontextmanager
async def upstream_answering(*answers: bytes, then_close: bool = False) -> AsyncIterator[Scripted]:
    holder: list[Scripted] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await answering(*answers, then_close=then_close)(holder[0])(reader, writer, n)

    async with scripted(handler) as upstream:
        holder.append(upstream)
        yield upstream


@pytest.fixture
async def pool() -> AsyncIterator[http1.Pool]:
    pool = http1.Pool(connect_timeout=5, read_timeout=5, limit=4)
    yield pool
    pool.close()


async def get(pool: http1.Pool, origin: str, method: str = "GET", **kwargs) -> tuple[int, list, bytes]:
    answer = await pool.send(origin, method, "/", [("Accept", "*/*")], **kwargs)
    try:
        body = answer.body
        if body is None:
            body = b"".join([chunk async for chunk in answer.chunks()])
        return answer.status, answer.headers, body
    finally:
        answer.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


async def test_content_length_answers_keep_the_connection_for_the_next_request(pool):
    async with upstream_answering(OK, OK, OK) as upstream:
        for _ in range(3):
            status, headers, body = await get(pool, upstream.origin)
            assert (status, headers, body) == (200, [("Content-Length", "5")], b"hello")
        assert upstream.connections == 1
        assert upstream.requests[0].startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_chunked_answers_are_read_to_their_last_chunk_and_the_connection_is_kept(pool):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\n"
    )
    async with upstream_answering(chunked, OK) as upstream:
        assert (await get(pool, upstream.origin))[2] == b"hello, world"
        assert (await get(pool, upstream.origin))[2] == b"hello"
        assert upstream.connections == 1


async def test_close_delimited_answers_end_with_the_connection_which_is_not_reused(pool):
    for answer in (
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    ):
        async with upstream_answering(answer, then_close=True) as upstream:
            assert (await get(pool, upstream.origin))[::2] == (200, b"until the end")
            assert (await get(pool, upstream.origin))[::2] == (200, b"until the end")
            assert upstream.connections == 2


async def test_http_1_0_with_content_length_is_read_to_its_length_and_not_reused(pool):
    async with upstream_answering(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") as upstream:
        assert (await get(pool, upstream.origin))[2] == b"ok"
        assert (await get(pool, upstream.origin))[2] == b"ok"
        assert upstream.connections == 2


async def test_answers_without_a_body_head_204_304(pool):
    no_body = (
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\n',
        OK,
    )
    async with upstream_answering(*no_body) as upstream:
        assert (await get(pool, upstream.origin))[::2] == (204, b"")
        assert (await get(pool, upstream.origin))[::2] == (304, b"")
        assert (await get(pool, upstream.origin))[::2] == (200, b"hello")  # the same connection, still in step
        assert upstream.connections == 1

    async def head_or_get(reader, writer, _n):
        while request := await upstream.request(reader):
            writer.write(OK[: OK.index(b"\r\n\r\n") + 4] if request.startswith(b"HEAD ") else OK)

    # HEAD: the Content-Length says what a GET would get; no body follows, and the connection is not used again.
    async with scripted(head_or_get) as upstream:
        assert await get(pool, upstream.origin, "HEAD") == (200, [("Content-Length", "5")], b"")
        assert (await get(pool, upstream.origin))[2] == b"hello"
        assert upstream.connections == 2


async def test_interim_answers_are_skipped_and_101_is_refused(pool):
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK
    async with upstream_answering(interim, OK) as upstream:
        assert await get(pool, upstream.origin) == (200, [("Content-Length", "5")], b"hello")
        assert (await get(pool, upstream.origin))[2] == b"hello"
        assert upstream.connections == 1
    async with upstream_answering(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n") as upstream:
        with pytest.raises(http1.UpstreamError, match="switched protocols"):
            await get(pool, upstream.origin)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: pwned=1\r\nContent-Length: 2\r\n\r\nok",  # a bare CR
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * (http1.MAX_HEAD + 1) + b"\r\n\r\n",
    ],
    ids=["bare-cr", "length-and-chunked", "two-lengths", "bad-chunk-size", "bad-status", "not-http", "oversized"],
)
async def test_malformed_or_oversized_answers_are_errors(pool, answer):
    async with upstream_answering(answer) as upstream:
        with pytest.raises(http1.UpstreamError) as raised:
            await get(pool, upstream.origin)
        assert "not valid HTTP/1.1" in str(raised.value) or "head is over 64 KiB" in str(raised.value)


async def test_an_answer_cut_short_is_an_error_and_bytes_nobody_asked_for_end_the_connection(pool):
    async with upstream_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", then_close=True) as upstream:
        answer = await pool.send(upstream.origin, "GET", "/", [])
        with pytest.raises(http1.UpstreamError, match="closed the connection without a complete answer"):
            async for _ in answer.chunks():
                pass
        answer.close()
    async with upstream_answering(OK + b"HTTP/1.1 200 OK\r\n\r\n", OK) as upstream:
        assert (await get(pool, upstream.origin))[2] == b"hello"
        assert (await get(pool, upstream.origin))[2] == b"hello"
        assert upstream.connections == 2


async def test_a_kept_alive_connection_the_upstream_closed_is_stale_not_an_answer(pool):
    async def first_answer_then_close(reader, writer, _n):
        await upstream.request(reader)
        writer.write(OK)
        await upstream.request(reader)  # the next request arrives as the upstream closes (its keep-alive ran out)
        writer.transport.abort()

    async with scripted(first_answer_then_close) as upstream:
        assert (await get(pool, upstream.origin))[2] == b"hello"
        with pytest.raises(http1.Stale):
            await get(pool, upstream.origin)
        assert (await get(pool, upstream.origin, fresh=True))[2] == b"hello"
        assert upstream.connections == 2


async def test_an_answer_read_only_in_part_closes_its_connection(pool):
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000
    async with upstream_answering(big, OK) as upstream:
        answer = await pool.send(upstream.origin, "GET", "/", [])
        async for chunk in answer.chunks():
            assert chunk
            break
        answer.close()
        assert (await get(pool, upstream.origin))[2] == b"x" * 1_000_000
        assert upstream.connections == 2


async def test_reading_pauses_while_the_visitor_has_not_taken_the_body(pool):
    size = 8 * 1024 * 1024

    async def large(reader, writer, _n):
        await upstream.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()

    async with scripted(large) as upstream:
        answer = await pool.send(upstream.origin, "GET", "/", [])
        received, most_buffered = 0, 0
        async for chunk in answer.chunks():
            received += len(chunk)
            most_buffered = max(most_buffered, answer._conn.buffered)
            await asyncio.sleep(0.001)  # a slow visitor
        answer.close()
    assert received == size
    assert most_buffered <= http1.HIGH_WATER + 256 * 1024  # one read past the mark at most, never the whole body


async def test_timeouts_and_refused_connections(pool):
    async def silent(reader, _writer, _n):
        await reader.read()

    pool.read_timeout = 0.2
    async with scripted(silent) as upstream:
        with pytest.raises(http1.ReadTimeout, match="did not answer within 0.2 seconds"):
            await get(pool, upstream.origin)
    with pytest.raises(http1.ConnectFailed):
        await get(pool, f"http://127.0.0.1:{free_port()}")


async def test_the_request_is_framed_by_the_gateway_and_cannot_carry_injected_lines(pool):
    async def chunks():
        yield b"abc"
        yield b""
        yield b"defg"

    async def body_reader(reader, writer, _n):
        for _ in range(3):
            head = await reader.readuntil(b"\r\n\r\n")
            if b"chunked" in head:
                body = await reader.readuntil(b"0\r\n\r\n")
            else:
                body = await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
            upstream.requests.append(head + body)
            writer.write(OK)

    async with scripted(body_reader) as upstream:
        await get(pool, upstream.origin, "POST", body=chunks(), length=7)
        await get(pool, upstream.origin, "POST", body=chunks())
        await get(pool, upstream.origin, "PUT", length=0)
    with_length, chunked, empty = upstream.requests
    assert with_length.endswith(b"\r\nContent-Length: 7\r\n\r\nabcdefg")
    assert chunked.endswith(b"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    assert empty.endswith(b"\r\nContent-Length: 0\r\n\r\n")

    for headers, target in (([("X-A", "a\r\nSet-Cookie: pwned=1")], "/"), ([], "/\r\nX: 1"), ([("X\n", "1")], "/")):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            await pool.send("http://127.0.0.1:1", "GET", target, headers)


async def test_at_most_limit_connections_per_origin_and_a_wait_for_one_is_bounded(pool):
    async def hold(reader, _writer, _n):
        await reader.read()

    pool.connect_timeout = 0.2
    async with scripted(hold) as upstream:
        pool.read_timeout = 30
        waiting = [asyncio.create_task(get(pool, upstream.origin)) for _ in range(pool.limit)]

        async def all_taken():
            return upstream.connections == pool.limit

        await wait_for(all_taken, what="every connection taken")
        with pytest.raises(http1.ConnectTimeout, match="had no free connection within 0.2 seconds"):
            await get(pool, upstream.origin)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
