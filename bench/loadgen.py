"""Load generator for `POST /webhooks`: signed `pull_request.synchronize` deliveries, each with a unique
X-GitHub-Delivery (a UUID, like GitHub's) and a new head SHA, round-robin over a few PR numbers.

Raw HTTP/1.1 over asyncio streams with keep-alive connections (an HTTP client library would cost more CPU than
the server under test on a 2-core machine). Bounded: at most `rate x duration` requests (open loop), or until
`duration` has passed (closed loop), each request with a timeout, the whole run with a hard deadline.

  python -m bench.loadgen --url http://127.0.0.1:8080/webhooks open --rate 200 --duration 20
  python -m bench.loadgen --url http://127.0.0.1:8080/webhooks closed --connections 16 --duration 8

Open loop: request i is due at start + i/rate whatever happened before (no coordinated omission); latency is
measured from that due time, so a slow server or a late client both count against it. A due request takes an idle
connection or opens a new one. Closed loop: N connections, each sends its next delivery when the previous answer
arrived; throughput is counted after a warm-up second. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import sys
import time
import uuid
from urllib.parse import urlsplit

from bench._common import SECRET, Payload, fake_sha, percentile


class Factory:
    def __init__(self, url: str, secret: str, prs: list[int], nonce: str, event: str = "pull_request.synchronize"):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path or "/"
        self.payload = Payload(event)
        self.secret, self.prs, self.nonce = secret, prs, nonce
        self.count = 0

    def next(self) -> bytes:
        i = self.count
        self.count += 1
        body = self.payload.body(self.prs[i % len(self.prs)], fake_sha(self.nonce, i))
        headers = self.payload.headers(body, str(uuid.uuid4()), self.secret)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(*await asyncio.open_connection(host, port))

    async def exchange(self, data: bytes) -> int:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            await self.reader.readexactly(int(lower[at + 17 : end]))
        else:
            self.reusable = False
            await self.reader.read()
        if b"\r\nconnection: close" in lower:
            self.reusable = False
        return status

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


class Stats:
    def __init__(self):
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.statuses: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.opened = 0

    def summary(self, **extra) -> dict:
        ms = lambda v: round(v * 1000, 2)  # noqa: E731
        lat = self.latencies
        non2xx = sum(n for s, n in self.statuses.items() if not 200 <= s < 300)
        return {
            **extra,
            "completed": len(lat),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_2xx": non2xx,
            "errors": dict(self.errors),
            "p50_ms": ms(percentile(lat, 50)),
            "p90_ms": ms(percentile(lat, 90)),
            "p99_ms": ms(percentile(lat, 99)),
            "p999_ms": ms(percentile(lat, 99.9)),
            "max_ms": ms(max(lat)) if lat else None,
            "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
            "client_lag_p99_ms": ms(percentile(self.lags, 99)) if self.lags else None,
            "client_lag_max_ms": ms(max(self.lags)) if self.lags else None,
            "connections_opened": self.opened,
        }


async def open_loop(factory: Factory, rate: float, duration: float, timeout: float, max_conns: int) -> dict:
    loop = asyncio.get_running_loop()
    stats = Stats()
    idle: list[Conn] = []
    busy = 0
    n = int(rate * duration)

    async def one(data: bytes, due: float) -> None:
        nonlocal busy
        conn = None
        busy += 1
        try:
            async with asyncio.timeout(timeout):
                if idle:
                    conn = idle.pop()
                else:
                    conn = await Conn.open(factory.host, factory.port)
                    stats.opened += 1
                stats.lags.append(loop.time() - due)
                status = await conn.exchange(data)
            stats.latencies.append(loop.time() - due)
            stats.statuses[status] += 1
            if conn.reusable:
                idle.append(conn)
                conn = None
        except TimeoutError:
            stats.errors["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            stats.errors[type(e).__name__] += 1
        finally:
            busy -= 1
            if conn is not None:
                conn.close()

    tasks = set()
    start = loop.time() + 0.05
    for i in range(n):
        due = start + i / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        if busy >= max_conns:  # the server is not keeping up; do not grow without bound
            stats.errors["client_limit"] += 1
            continue
        task = asyncio.create_task(one(factory.next(), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout + 5)
    elapsed = loop.time() - start
    for conn in idle:
        conn.close()
    return stats.summary(
        mode="open",
        target_rate=rate,
        duration_s=duration,
        sent=n,
        achieved_rate=round(len(stats.latencies) / elapsed, 1),
    )


async def closed_loop(factory: Factory, connections: int, duration: float, timeout: float, warmup: float) -> dict:
    loop = asyncio.get_running_loop()
    stats = Stats()
    counted_from = loop.time() + warmup
    deadline = counted_from + duration

    async def worker() -> None:
        conn = None
        while loop.time() < deadline:
            try:
                async with asyncio.timeout(timeout):
                    if conn is None:
                        conn = await Conn.open(factory.host, factory.port)
                        stats.opened += 1
                    t0 = loop.time()
                    status = await conn.exchange(factory.next())
                t1 = loop.time()
                if t0 >= counted_from and t1 <= deadline:
                    stats.latencies.append(t1 - t0)
                    stats.statuses[status] += 1
                if not conn.reusable:
                    conn.close()
                    conn = None
            except TimeoutError:
                stats.errors["timeout"] += 1
                conn = _drop(conn)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                stats.errors[type(e).__name__] += 1
                conn = _drop(conn)
                await asyncio.sleep(0.01)
        _drop(conn)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))), warmup + duration + timeout + 5)
    return stats.summary(
        mode="closed",
        connections=connections,
        duration_s=duration,
        achieved_rate=round(len(stats.latencies) / duration, 1),
    )


def _drop(conn: Conn | None) -> None:
    if conn is not None:
        conn.close()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--prs", default="101,102,103,104,105", help="PR numbers, round-robin")
    parser.add_argument("--nonce", default=uuid.uuid4().hex[:8], help="makes the head SHAs unique across runs")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request (GitHub gives up after 10 s)")
    sub = parser.add_subparsers(dest="mode", required=True)
    op = sub.add_parser("open")
    op.add_argument("--rate", type=float, default=200.0)
    op.add_argument("--duration", type=float, default=20.0)
    op.add_argument("--max-connections", type=int, default=1000)
    cl = sub.add_parser("closed")
    cl.add_argument("--connections", type=int, default=16)
    cl.add_argument("--duration", type=float, default=8.0)
    cl.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 300:
        parser.error("--duration must be in (0, 300] seconds")

    factory = Factory(args.url, args.secret, [int(p) for p in args.prs.split(",")], args.nonce)
    ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    if args.mode == "open":
        if not 0 < args.rate <= 20000:
            parser.error("--rate must be in (0, 20000]")
        result = asyncio.run(open_loop(factory, args.rate, args.duration, args.timeout, args.max_connections))
    else:
        if not 0 < args.connections <= 1000:
            parser.error("--connections must be in (0, 1000]")
        result = asyncio.run(closed_loop(factory, args.connections, args.duration, args.timeout, args.warmup))
    ru1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    result["client_cpu_pct"] = round(100 * cpu / wall, 1)
    result["requests_built"] = factory.count
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
