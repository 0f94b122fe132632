"""The preview gateway's overhead: the same preview reached directly and through `ghapp serve`'s gateway, side by
side in one run (docs/benchmarks.md, "Preview gateway").

  python -m bench.gateway [--requests 4000] [--connections 16] [--duration 5] [--upload-mb 100]

- The preview is a small aiohttp server in its own process (`python -m bench.gateway upstream PORT`): `GET /`
  answers 13 bytes, `POST /upload` reads its body as it comes and answers how many bytes arrived.
- ghapp is a real `ghapp serve` process (its own embedded PostgreSQL) with one active environment whose
  `preview_url` is that server; the gateway reaches it at `<name>.localhost:<gateway port>` (Host header).
- Latency: one keep-alive connection, requests one after another, direct and gateway alternating in blocks of 200;
  p50 / p99 of each and the p50 the gateway adds (target <= 1 ms).
- Throughput: N keep-alive connections, closed loop, `duration` seconds each, direct / gateway / direct / gateway;
  requests per second and the gateway's share of direct (target >= 50 %).
- Upload: `upload-mb` MB POSTed through the gateway as fast as the socket takes it, while ghapp's RSS
  (/proc/<pid>/status VmRSS) is sampled every 20 ms; its growth over the idle RSS (target <= 20 MB).

The client speaks raw HTTP/1.1 over asyncio streams (an HTTP library would cost more CPU than the proxy under test
on a 2-core machine). Prints the machine facts, a table and one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench._common import (
    CLK_TCK,
    GhappServe,
    clean_env,
    free_port,
    machine_facts,
    percentile,
    print_facts,
    table,
)

BLOCK = 200
CHUNK = 1024 * 1024


# --- the preview ---------------------------------------------------------------------------------------------------


def upstream_main(port: int) -> None:
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello, world\n")

    async def upload(request: web.Request) -> web.Response:
        received = 0
        async for chunk in request.content.iter_any():
            received += len(chunk)
        return web.Response(text=str(received))

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/upload", upload)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- a raw HTTP/1.1 client -----------------------------------------------------------------------------------------


class Connection:
    def __init__(self, port: int, host: str) -> None:
        self.port, self.host = port, host
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def get(self) -> int:
        assert self.reader and self.writer
        self.writer.write(f"GET / HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        return await self.answer()

    async def answer(self) -> int:
        assert self.reader
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer:
            self.writer.close()


async def latencies(targets: dict[str, tuple[int, str]], requests: int) -> dict[str, list[float]]:
    connections = {name: await Connection(*target).open() for name, target in targets.items()}
    found: dict[str, list[float]] = {name: [] for name in targets}
    for conn in connections.values():  # warm up: first requests, caches, the upstream pool
        for _ in range(50):
            assert await conn.get() == 200
    for _ in range(requests // BLOCK):
        for name, conn in connections.items():
            for _ in range(BLOCK):
                start = time.perf_counter()
                status = await conn.get()
                found[name].append(time.perf_counter() - start)
                assert status == 200, (name, status)
    for conn in connections.values():
        conn.close()
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def throughput(port: int, host: str, connections: int, duration: float) -> tuple[float, int]:
    """Requests per second, and how many were counted."""
    conns = [await Connection(port, host).open() for _ in range(connections)]
    done = 0
    warm_until = time.monotonic() + 0.5
    stop_at = warm_until + duration

    async def loop(conn: Connection) -> None:
        nonlocal done
        while (now := time.monotonic()) < stop_at:
            assert await conn.get() == 200
            if now >= warm_until:
                done += 1

    await asyncio.gather(*(loop(c) for c in conns))
    for conn in conns:
        conn.close()
    return done / duration, done


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def upload(port: int, host: str, megabytes: int, watch_pid: int | None) -> dict:
    """POST `megabytes` MB; the peak RSS of `watch_pid` meanwhile (sampled every 20 ms)."""
    samples: list[int] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            if watch_pid:
                samples.append(rss_kb(watch_pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)

    before = rss_kb(watch_pid) if watch_pid else 0
    sampler = asyncio.create_task(sample())
    conn = await Connection(port, host).open()
    assert conn.writer and conn.reader
    size = megabytes * CHUNK
    start = time.perf_counter()
    conn.writer.write(f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n\r\n".encode())
    block = b"\0" * CHUNK
    for _ in range(megabytes):
        conn.writer.write(block)
        await conn.writer.drain()
    head = await conn.reader.readuntil(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(b":")[1])
    received = int(await conn.reader.readexactly(length))
    seconds = time.perf_counter() - start
    conn.close()
    stop.set()
    await sampler
    assert head.startswith(b"HTTP/1.1 200") and received == size, (head, received, size)
    return {
        "seconds": seconds,
        "mb_per_s": megabytes / seconds,
        "rss_before_mb": before / 1024,
        "rss_peak_mb": max(samples, default=before) / 1024,
    }


# --- the run -------------------------------------------------------------------------------------------------------


async def add_preview(database_url: str, preview_port: int) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        name = "pr-1-bench-1"
        await conn.execute(
            """INSERT INTO environments (repo_id, repository, pr_number, name, desired, desired_sha, status,
                                         observed_generation, provisioned, deployed_sha, preview_url)
               VALUES (1, 'acme/bench', 1, $1, 'present', 'abc', 'active', 1, true, 'abc', $2)""",
            name,
            f"http://127.0.0.1:{preview_port}/",
        )
        return name
    finally:
        await conn.close()


async def measure(
    args: argparse.Namespace, ghapp: GhappServe, gateway_port: int, preview_port: int, preview_pid: int
) -> dict:
    url = ghapp.database_url()
    assert url, "no embedded PostgreSQL"
    name = await add_preview(url, preview_port)
    gateway = (gateway_port, f"{name}.localhost:{gateway_port}")
    direct = (preview_port, f"127.0.0.1:{preview_port}")
    assert ghapp.proc is not None

    lat = await latencies({"direct": direct, "gateway": gateway}, args.requests)
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    cpu = {"ghapp": 0.0, "preview": 0.0}
    proxied = 0
    for _ in range(2):
        for label, (port, host) in (("direct", direct), ("gateway", gateway)):
            before = {"ghapp": cpu_seconds(ghapp.proc.pid), "preview": cpu_seconds(preview_pid)}
            rate, count = await throughput(port, host, args.connections, args.duration)
            rates[label].append(rate)
            if label == "gateway":
                proxied += count
                cpu["ghapp"] += cpu_seconds(ghapp.proc.pid) - before["ghapp"]
                cpu["preview"] += cpu_seconds(preview_pid) - before["preview"]
    up_direct = await upload(*direct, args.upload_mb, None)
    up_gateway = await upload(*gateway, args.upload_mb, ghapp.proc.pid)
    p50 = {k: percentile(v, 50) * 1000 for k, v in lat.items()}
    p99 = {k: percentile(v, 99) * 1000 for k, v in lat.items()}
    rps = {k: sum(v) / len(v) for k, v in rates.items()}
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "added_p50_ms": p50["gateway"] - p50["direct"],
        "requests_per_s": rps,
        "requests_per_s_runs": rates,
        "throughput_share": rps["gateway"] / rps["direct"],
        # CPU per request through the gateway (includes the warm-up half second, so a little high)
        "ghapp_cpu_us_per_request": cpu["ghapp"] / proxied * 1e6,
        "preview_cpu_us_per_request": cpu["preview"] / proxied * 1e6,
        "upload_direct": up_direct,
        "upload_gateway": up_gateway,
        "rss_growth_mb": up_gateway["rss_peak_mb"] - up_gateway["rss_before_mb"],
    }


def main() -> None:
    if sys.argv[1:2] == ["upstream"]:
        upstream_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="sequential requests per side (latency)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (throughput)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput round")
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--profile", type=Path, help="run ghapp under cProfile (CPU time), writing its statistics here")
    args = parser.parse_args()
    facts = machine_facts()
    print_facts(facts)

    preview_port, gateway_port = free_port(), free_port()
    preview = subprocess.Popen([sys.executable, "-m", "bench.gateway", "upstream", str(preview_port)], env=clean_env())
    with tempfile.TemporaryDirectory(prefix="ghapp-bench-gateway-") as work:
        Path(work).chmod(0o755)  # the embedded PostgreSQL's user must reach its data dir when run as root
        profile = ("-m", "bench.cpu_profile", str(args.profile.absolute())) if args.profile else ()
        ghapp = GhappServe(Path(work), python_args=profile, GHAPP_GATEWAY_PORT=str(gateway_port))
        try:
            ghapp.start()
            result = asyncio.run(measure(args, ghapp, gateway_port, preview_port, preview.pid))
        finally:
            ghapp.stop()
            preview.terminate()
            preview.wait()
    print(
        table(
            ["", "direct", "gateway", "gateway vs direct"],
            [
                [
                    "p50 latency (ms)",
                    f"{result['p50_ms']['direct']:.3f}",
                    f"{result['p50_ms']['gateway']:.3f}",
                    f"+{result['added_p50_ms']:.3f} ms",
                ],
                ["p99 latency (ms)", f"{result['p99_ms']['direct']:.3f}", f"{result['p99_ms']['gateway']:.3f}", ""],
                [
                    "requests/s, keep-alive",
                    f"{result['requests_per_s']['direct']:.0f}",
                    f"{result['requests_per_s']['gateway']:.0f}",
                    f"{result['throughput_share']:.0%}",
                ],
                [
                    "upload MB/s",
                    f"{result['upload_direct']['mb_per_s']:.0f}",
                    f"{result['upload_gateway']['mb_per_s']:.0f}",
                    f"{result['upload_gateway']['mb_per_s'] / result['upload_direct']['mb_per_s']:.0%}",
                ],
                [
                    "CPU per proxied request (µs)",
                    f"{result['preview_cpu_us_per_request']:.0f} (the preview)",
                    f"{result['ghapp_cpu_us_per_request']:.0f} (ghapp)",
                    "",
                ],
                [
                    f"ghapp RSS during {args.upload_mb} MB upload",
                    "",
                    f"{result['upload_gateway']['rss_before_mb']:.1f} -> "
                    f"{result['upload_gateway']['rss_peak_mb']:.1f} MB",
                    f"+{result['rss_growth_mb']:.1f} MB",
                ],
            ],
        )
    )
    print(json.dumps({"facts": facts, "args": vars(args), **result}, default=str))


if __name__ == "__main__":
    main()
