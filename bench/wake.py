"""Benchmark: wake latency on terraform/local, from a request to a sleeping preview to the first byte of the
preview's own answer (target p50 <= 2 s on this 2-core machine; a sleeping Render service takes 30-90 s).

  python -m bench.wake                 # 10 wakes, about a minute
  python -m bench.wake --rounds 20

`python -m ghapp serve` (own data dir and embedded PostgreSQL, terraform/local, GHAPP_SLEEP_AFTER=never so only
the benchmark puts the preview to sleep) gets one `pull_request.opened`. Each round: the preview is put to sleep
(db/sleep.request_sleep, as `/preview sleep` does) and the benchmark waits until it is `sleeping` and its port is
closed; then one request with `Accept: */*` goes to the preview's host on ghapp's own gateway (GHAPP_GATEWAY_PORT:
its wake guard holds the request until the preview is active, then the gateway proxies it) and the time to the
first byte of the preview's answer is taken. The answer must be the preview's page. ghapp's own
`ghapp_wake_latency_seconds` (request → `active`, from /metrics) is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

from bench._common import (
    LOCAL_MODULE,
    GhappServe,
    Payload,
    fake_sha,
    http_json,
    machine_facts,
    percentile,
    print_facts,
    table,
)
from bench.provisioning import kill_leftovers
from ghapp.db import sleep


async def _status(url: str, env_id: int) -> dict:
    return http_json(f"{url}/api/environments/{env_id}")[1]


async def _until(check, timeout: float = 120.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(every)
    raise TimeoutError("condition not reached")


async def _closed(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
            await r.read()
            return False
    except (aiohttp.ClientError, TimeoutError):
        return True


async def main(rounds: int) -> None:
    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="ghapp-bench-wake-") as tmp:
        serve = GhappServe(
            Path(tmp),
            GHAPP_TERRAFORM_MODULE=str(LOCAL_MODULE),
            GHAPP_SLEEP_AFTER="never",
            GHAPP_PUSH_SETTLE="0",
            TF_VAR_port_base="26500",
        ).start()
        try:
            opened = Payload("pull_request.opened")
            body = opened.body(4242, fake_sha("wake-bench"))
            status, reply = http_json(f"{serve.url}/webhooks", body, opened.headers(body, "wake-bench-1"))
            assert status == 202, reply
            env_id = reply["environment_id"]
            env = await _until(lambda: _active(serve.url, env_id))
            url = env["preview_url"]
            database_url = serve.database_url()
            assert database_url
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
            gateway_port = serve.env["GHAPP_GATEWAY_PORT"]
            front, host = f"http://127.0.0.1:{gateway_port}/", f"{env['name']}.localhost:{gateway_port}"
            latencies = []
            try:
                async with aiohttp.ClientSession() as session:
                    for _ in range(rounds):
                        async with pool.acquire() as conn:
                            assert await sleep.request_sleep(conn, env_id)
                        await _until(lambda: _sleeping(serve.url, env_id))
                        await _until(lambda: _closed(url))
                        started = time.perf_counter()
                        async with session.get(front, headers={"Accept": "*/*", "Host": host}) as r:
                            first = await r.content.readany()
                            first_byte = time.perf_counter() - started
                            page = (first + await r.content.read()).decode(errors="replace")
                        assert r.status == 200 and opened.repository in page, (r.status, page[:200])
                        latencies.append(first_byte)
            finally:
                await pool.close()
            metrics = http_json(f"{serve.url}/metrics")[1]
        finally:
            serve.stop()
            leftovers = kill_leftovers(Path(tmp))  # the preview outlives serve; it is the benchmark's to end
    if leftovers:
        print(f"killed leftover preview processes: {leftovers}")
    print_facts(facts)
    count = _metric(metrics, "ghapp_wake_latency_seconds_count")
    total = _metric(metrics, "ghapp_wake_latency_seconds_sum")
    print(
        table(
            ["wakes", "p50 s", "p90 s", "max s", "mean s", "ghapp_wake_latency mean s (request → active)"],
            [
                [
                    len(latencies),
                    f"{statistics.median(latencies):.2f}",
                    f"{percentile(latencies, 90):.2f}",
                    f"{max(latencies):.2f}",
                    f"{statistics.mean(latencies):.2f}",
                    f"{total / count:.2f} over {count:.0f}" if count else "-",
                ]
            ],
        )
    )
    print(f"target p50 <= 2 s: {'met' if statistics.median(latencies) <= 2 else 'NOT met'}")


async def _active(url: str, env_id: int) -> dict | None:
    env = await _status(url, env_id)
    return env if env.get("status") == "active" and env.get("converged") else None


async def _sleeping(url: str, env_id: int) -> dict | None:
    env = await _status(url, env_id)
    return env if env.get("status") == "sleeping" and env.get("converged") else None


def _metric(text: str, name: str) -> float:
    for line in str(text).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
