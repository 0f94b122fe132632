"""The gateway's HTTP/1.1 client to previews: keep-alive connections per upstream origin on asyncio protocols,
answers parsed by llhttp (`httptools`, the parser uvicorn uses). Leaner than a general-purpose client: a proxied
request is one write to the upstream and, for an answer that arrives whole, one write to the visitor.

What it guarantees (tests/test_gateway_http1.py):
- the request's framing is the gateway's own: `Content-Length` when the visitor's request had one, else chunked when
  it has a body, else none; the upstream's answer is framed by Content-Length, chunked, or the connection's close;
- no body after HEAD, 1xx, 204 or 304; 1xx answers before the final one are skipped; 101 is refused (no upgrade was
  asked for: WebSockets take another path);
- a malformed answer (llhttp's strict mode: bare CR, both Content-Length and Transfer-Encoding, ...) or a head over
  `MAX_HEAD` bytes is an `UpstreamError`, never passed on;
- a connection goes back to the pool only when its answer was read to the end, the upstream allows keep-alive and
  nothing else arrived; a kept-alive connection the upstream closed before answering is `Stale` (the caller may
  retry a request that can be replayed);
- an answer's body is buffered at most `HIGH_WATER` bytes: reading from the upstream pauses until the visitor takes
  it.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator

import httptools

MAX_HEAD = 64 * 1024  # bytes of status line and headers
HIGH_WATER = 256 * 1024  # answer bytes buffered before reading from the upstream pauses
IDLE_TIMEOUT = 30.0  # seconds an unused kept-alive connection stays open
_FORBIDDEN = re.compile(r"[\x00\r\n]")
CLOSED = "closed the connection without a complete answer"


class UpstreamError(Exception):
    """The upstream did not give a complete, well-formed answer; the message says how."""


class ConnectFailed(UpstreamError):
    """The connection could not be made (refused, unreachable): nothing was sent."""


class ConnectTimeout(UpstreamError):
    """No connection (or no free one, with `limit` in use) within the connect timeout: nothing was sent."""


class ReadTimeout(UpstreamError):
    """The upstream sent nothing for the read timeout."""


class Stale(UpstreamError):
    """A kept-alive connection was closed by the upstream before any byte of the answer: the request may have been
    received or not, so only a request that can be replayed may be sent again."""


class Answer:
    """The upstream's answer: `status`, `reason`, `headers` (as sent, in order), and its body by `chunks()`, or
    `body` when the whole of it has arrived already. `close()` when done (the connection goes back to the pool only
    if the answer was read to the end)."""

    __slots__ = ("status", "reason", "headers", "_conn")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.reason = conn.reason
        self.headers = conn.headers

    @property
    def body(self) -> bytes | None:
        """The whole body when it has all arrived (b"" for none), else None: read `chunks()`."""
        conn = self._conn
        if not conn.complete:
            return None
        data = b"".join(conn.chunks)
        conn.chunks.clear()
        conn.buffered = 0
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                chunk = conn.chunks.popleft()
                conn.buffered -= len(chunk)
                if conn.reading_paused and conn.buffered <= HIGH_WATER // 2 and conn.transport is not None:
                    conn.reading_paused = False
                    conn.transport.resume_reading()
                yield chunk
            elif conn.complete:
                return
            else:
                await conn.wait()

    def close(self) -> None:
        self._conn.finish()


class _Connection(asyncio.Protocol):
    """One connection to an upstream; one request at a time."""

    def __init__(self, pool: Pool, key: str) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.writing_paused = False
        self.reading_paused = False
        self.used = 0  # requests sent on it
        self.idle_since = 0.0
        self.deadline = 0.0  # of the current wait for the upstream's next bytes (loop time)
        self.timer: asyncio.TimerHandle | None = None
        self._reset(head_only=False)

    def _reset(self, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.head_size = 0  # bytes of the headers parsed
        self.fed_head = 0  # bytes given to llhttp before the head was complete
        self.headers_done = False
        self.framed = False  # the answer says its length (Content-Length or chunked): not ended by a close
        self.complete = False
        self.keep_alive = False
        self.received = False  # any byte of this answer
        self.error: UpstreamError | None = None
        self.whole_request = True  # False when the answer came before the request's body was all sent
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.parser is None or self.complete:
            self.keep_alive = False  # bytes nobody asked for: this connection is not used again
            self._close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self.error is not None:  # a callback's verdict
                self._fail(self.error)
                return
            # A HEAD answer's head, or bytes after the whole answer: where the answer ended is not known, so close.
            self.complete, self.keep_alive = True, False
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"sent an answer that is not valid HTTP/1.1 ({e})"))
            return
        if not self.headers_done:  # all of `data` was head: a header line without end is cut off here
            self.fed_head += len(data)
            if self.fed_head > MAX_HEAD:
                self._fail(UpstreamError(f"sent an answer whose head is over {MAX_HEAD // 1024} KiB"))
                return
        elif self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)  # answered: the rest of the request's body is not waited for
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.forget(self)
        if self.parser is not None and not self.complete and self.error is None:
            if self.headers_done and not self.framed:
                self.complete = True  # a close-delimited body ends here
            elif not self.received and self.used > 1:
                self.error = Stale(
                    "closed the connection without an answer (a kept-alive one, as the request went out)"
                )
            else:
                self.error = UpstreamError(CLOSED)
        self.keep_alive = False
        self._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Stop  # a second answer to one request: this one stands, the connection is closed

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD:
            self.error = UpstreamError(f"sent an answer whose head is over {MAX_HEAD // 1024} KiB")
            raise _Stop
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                self.error = UpstreamError("switched protocols, which nobody asked for")
                raise _Stop
            self.reason, self.headers = "", []  # an interim answer (100 Continue, 103 Early Hints): the final follows
            return
        self.status, self.headers_done = status, True
        if status in (204, 304):
            self.framed = True  # never a body, whatever the headers say (llhttp knows too)
        if self.head_only:
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return  # the end of an interim answer
        assert self.parser is not None
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # the client's side

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.error = error
        self._close()
        self._wake()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait(self) -> None:
        """Until more of the answer arrives (raises its error, or ReadTimeout)."""
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.deadline = loop.time() + self.pool.read_timeout
        if self.timer is None or self.timer.when() > self.deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_at(self.deadline, self._check_deadline)
        try:
            await self.waiter
        finally:
            self.waiter = None
        if self.error is not None:
            raise self.error

    def _check_deadline(self) -> None:
        """The read timeout. One timer per connection, moved on only when it fires (cheaper than one per wait)."""
        self.timer = None
        if self.waiter is None or self.waiter.done():
            return  # nobody waits: the next wait arms it again
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:
            self.timer = loop.call_at(self.deadline, self._check_deadline)
            return
        self._fail(ReadTimeout(f"did not answer within {self.pool.read_timeout:g} seconds"))

    async def drain(self) -> None:
        if self.transport is None:
            raise self.error or UpstreamError(CLOSED)
        if self.writing_paused:
            self.drain_waiter = asyncio.get_running_loop().create_future()
            await self.drain_waiter

    def start(self, head: bytes, head_only: bool) -> None:
        assert self.transport is not None
        self._reset(head_only)
        self.used += 1
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(head)

    def finish(self) -> None:
        """The answer is done with: back to the pool if it was read to the end and may be kept, else closed."""
        if self.complete and self.keep_alive and self.whole_request and not self.chunks and self.transport is not None:
            self.parser = None
            if self.reading_paused:
                self.reading_paused = False
                self.transport.resume_reading()
            self.pool.put(self)
        else:
            self._close()
        self.pool.release(self.key)


class _Stop(Exception):
    """Stops llhttp from a callback: after a HEAD answer's head (llhttp would read the body its Content-Length
    announces), at the start of a second answer, or with `error` set."""


class Pool:
    """Kept-alive connections per upstream origin (`scheme://host[:port]`), at most `limit` in use per origin."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, limit: int) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limit = limit
        self._idle: dict[str, list[_Connection]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._origins: dict[str, tuple[str, int, ssl.SSLContext | None, bytes]] = {}
        self._tls: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def send(
        self,
        origin: str,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: AsyncIterator[bytes] | None = None,
        length: int | None = None,
        *,
        fresh: bool = False,
    ) -> Answer:
        """Send a request and wait for the head of its answer. `body` (with `length`, or chunked without) is sent
        as it comes. Raises UpstreamError (ConnectFailed, ConnectTimeout, ReadTimeout, Stale). `fresh`: on a new
        connection, not a kept-alive one."""
        host, port, tls, authority = self._origin(origin)
        head = _request_head(method, target, authority, headers, body is not None, length)
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self.limit)
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self.connect_timeout)
            except TimeoutError:
                raise ConnectTimeout(f"had no free connection within {self.connect_timeout:g} seconds") from None
        else:
            await slots.acquire()
        try:
            conn = None if fresh else self._take(origin)
            if conn is None:
                conn = await self._connect(origin, host, port, tls)
            conn.start(head, head_only=method == "HEAD")
        except BaseException:
            slots.release()
            raise
        try:
            if body is not None:
                await _send_body(conn, body, chunked=length is None)
            while not conn.headers_done:
                await conn.wait()
        except BaseException:
            conn.keep_alive = False
            conn.finish()
            raise
        return Answer(conn)

    def _origin(self, origin: str) -> tuple[str, int, ssl.SSLContext | None, bytes]:
        found = self._origins.get(origin)
        if found is None:
            parts = urllib.parse.urlsplit(origin)
            https = parts.scheme == "https"
            if https and self._tls is None:
                self._tls = ssl.create_default_context()
            assert parts.hostname is not None
            found = (parts.hostname, parts.port or (443 if https else 80), self._tls if https else None,
                     parts.netloc.encode("ascii"))  # fmt: skip
            self._origins[origin] = found
        return found

    def _take(self, key: str) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self, key: str, host: str, port: int, tls: ssl.SSLContext | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self, key), host, port, ssl=tls), self.connect_timeout
            )
        except TimeoutError:
            raise ConnectTimeout(f"did not accept a connection within {self.connect_timeout:g} seconds") from None
        except OSError as e:
            raise ConnectFailed(e.strerror or type(e).__name__) from None
        return conn

    def put(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._sweep)

    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def release(self, key: str) -> None:
        self._slots[key].release()

    def _sweep(self) -> None:
        """Close connections unused for IDLE_TIMEOUT (every IDLE_TIMEOUT seconds while any are idle)."""
        self._sweeper = None
        cutoff = time.monotonic() - IDLE_TIMEOUT
        for key, idle in list(self._idle.items()):
            for conn in [c for c in idle if c.idle_since <= cutoff]:
                idle.remove(conn)
                conn._close()  # noqa: SLF001
            if not idle:
                del self._idle[key]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn._close()  # noqa: SLF001
        self._idle.clear()


def _request_head(
    method: str, target: str, authority: bytes, headers: list[tuple[str, str]], has_body: bool, length: int | None
) -> bytes:
    """The request line and headers; `headers` must not frame the body (the gateway does: Content-Length `length`,
    else chunked when there is a body). ValueError for a CR, LF or NUL anywhere."""
    lines = [f"{n}: {v}\r\n" for n, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif has_body:
        lines.append("Transfer-Encoding: chunked\r\n")
    text = "".join(lines)
    if _FORBIDDEN.search("".join([method, target, *(n + v for n, v in headers)])):
        raise ValueError("a CR, LF or NUL in the request's method, target or headers")
    return b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
        method.encode("ascii"),
        target.encode("utf-8", "surrogateescape"),
        authority,
        text.encode("utf-8", "surrogateescape"),
    )


async def _send_body(conn: _Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in body:
        if conn.transport is None or conn.headers_done:
            conn.whole_request = False  # the upstream answered (or went away) before taking the whole body
            return
        if chunk:
            conn.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
    if chunked and conn.transport is not None:
        conn.transport.write(b"0\r\n\r\n")
