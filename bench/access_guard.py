"""What the access guard adds to one request to a preview (issue 11's gateway overhead target: ≤ 1 ms p50 in all),
in process: `check_access` on a mocked request, against a real embedded PostgreSQL, for a public preview, an
automation token and a signed-in session, with the per-replica caches warm (the steady state) and cold (a database
lookup on every request: what a replica pays once per session or token every `SESSION_CACHE_TTL`).

    python -m bench.access_guard [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bench._common import machine_facts, percentile, print_facts, table
from ghapp import db
from ghapp.config import Settings
from ghapp.core.contract import Access
from ghapp.db import access as store
from ghapp.db.embedded import EmbeddedPostgres
from ghapp.gateway.access import ACCESS, AccessControl, check_access, create_access_token

HOST = "pr-2-hello-world-1.localhost:8081"


async def measure(control: AccessControl, env, headers: dict[str, str], count: int) -> list[float]:
    app = web.Application()
    app[ACCESS] = control
    times = []
    for _ in range(count):
        request = make_mocked_request("GET", "/", headers={"Host": HOST, **headers}, app=app)
        started = time.perf_counter()
        answer = await check_access(request, env)
        times.append((time.perf_counter() - started) * 1e6)
        assert answer is None, answer
    return times


async def main(count: int) -> None:
    print_facts(machine_facts())
    tmp = Path(tempfile.mkdtemp(prefix="ghapp-bench-access-"))
    tmp.chmod(0o755)
    server = EmbeddedPostgres(tmp / "data")
    url = server.start()
    try:
        pool = await db.create_pool(url, min_size=1, max_size=4)
        await db.migrate(pool)
        await pool.execute(
            "INSERT INTO environments (id, name, repo_id, repository, pr_number, desired) "
            "VALUES (1, 'pr-2-hello-world-1', 186853002, 'Codertocat/Hello-World', 2, 'present')"
        )
        async with pool.acquire() as conn:
            token, _made = await create_access_token(conn, "Codertocat/Hello-World")
            await store.create_session(conn, "s" * 43, store.Person(HOST, 186853002, 7, "alice"), 3600)
            env = await store.environment_by_name(conn, "pr-2-hello-world-1")
        assert env is not None
        settings = Settings(client_id="Iv23li0", client_secret="x" * 40, gateway_port=8081)
        rows = []
        async with aiohttp.ClientSession() as session:
            for cache_ttl, caches in ((600.0, "warm"), (0.0, "cold")):
                control = AccessControl(settings, pool, session, None, cache_ttl=max(cache_ttl, 1e-9))
                cases = [
                    ("public", env.__class__(**{**env.__dict__, "access": Access.PUBLIC}), {}),
                    ("token", env, {"X-Ghapp-Access-Token": token}),
                    ("session", env, {"Cookie": f"ghapp_preview={'s' * 43}"}),
                ]
                for name, case_env, headers in cases:
                    control.decisions.put(7, 186853002, True)  # alice may read it (asked of GitHub every 5 min)
                    await measure(control, case_env, headers, min(count, 500))  # warm-up
                    times = await measure(control, case_env, headers, count)
                    rows.append(
                        [
                            name,
                            caches,
                            count,
                            f"{percentile(times, 50):.1f}",
                            f"{percentile(times, 99):.1f}",
                        ]
                    )
        await pool.close()
        print(table(["credential", "caches", "requests", "p50 µs", "p99 µs"], rows))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main(parser.parse_args().requests))
