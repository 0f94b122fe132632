"""Benchmark: the dashboard's list page and the JSON API with 1,000 environments.

  python -m bench.dashboard            # about a minute
  python -m bench.dashboard --quick    # fewer requests, for trying it out

Starts `python -m ghapp serve` (offline, its own embedded PostgreSQL, the scripted test module) and writes 1,000
environments straight into its database: 10 repositories, every status, titles with characters to escape, each
converged and already published, so neither the workers nor the publisher touch them while we measure; plus one
run with a 5,000-line log. Then, from this process over loopback, one request at a time (after a warm-up):
  GET /?limit=1000                 the whole list on one page (the issue's target: <= 150 ms)
  GET /                            the default page (200 rows) and a status filter
  GET /api/environments?limit=N    the JSON API, and walking all 1,000 through `next`
  GET /environments/{id}           a detail page with a 5,000-line log
  GET /metrics                     one scrape (includes the GROUP BY over environments)
And in this process, without HTTP: the list handler itself (SQL + rendering) and its SQL alone, to show where the
time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import sys
import tempfile
import time
from pathlib import Path

from bench._common import (
    SCRIPTED_MODULE,
    GhappServe,
    machine_facts,
    percentile,
    print_facts,
    table,
)

TARGET_MS = 150.0
ENVIRONMENTS = 1000

SEED = """
INSERT INTO environments (repo_id, repository, pr_number, name, head_ref, author, title, pr_url, desired,
                          desired_sha, head_sha, status, deployed_sha, preview_url, outputs, expires_at,
                          generation, observed_generation, created_at, attempts, last_error)
SELECT 1000 + i % 10, 'acme/service-' || i % 10, i, 'pr-' || i || '-service-' || i % 10 || '-' || i,
       'feature/change-' || i, 'developer' || i % 37,
       'Change ' || i || ': make <something> "better" & faster', 'https://github.com/acme/service-' || i % 10 ||
       '/pull/' || i, CASE WHEN s = 'destroyed' THEN 'absent' ELSE 'present' END, sha, sha, s,
       CASE WHEN s IN ('active', 'pending', 'creating') THEN sha END,
       CASE WHEN s IN ('active', 'pending', 'creating') THEN 'https://pr-' || i || '.preview.example.com/' END,
       CASE WHEN s = 'active' THEN jsonb_build_object('preview_url', 'https://pr-' || i || '.preview.example.com/',
                                                      'sha', sha) ELSE '{}'::jsonb END,
       now() + make_interval(hours => 72 - i % 72), 1, 1, now() - make_interval(mins => i * 7),
       CASE WHEN s = 'failed' THEN 6 ELSE 0 END,
       CASE WHEN s = 'failed' THEN 'Error: creating Deployment: timeout while waiting for rollout' END
FROM (SELECT i, md5(i::text) || substr(md5((i + 1)::text), 1, 8) AS sha,
             (ARRAY['active', 'active', 'active', 'active', 'active', 'destroyed', 'destroyed', 'failed',
                    'pending', 'creating'])[1 + i % 10] AS s
      FROM generate_series(1, $1) i) g;
UPDATE environments SET published_version = version;
"""


def seed(database_url: str) -> int:
    """Write the environments and one long run; returns the id of the environment with the long log."""
    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                first, second = SEED.strip().split(";\n", 1)
                await conn.execute(first, ENVIRONMENTS)
                env_id = await conn.fetchval("SELECT min(id) FROM environments WHERE status = 'active'")
                run_id = await conn.fetchval(
                    """INSERT INTO runs (environment_id, action, sha, generation, owner, state, finished_at)
                       VALUES ($1, 'apply', 'abc', 1, 'bench', 'succeeded', now()) RETURNING id""",
                    env_id,
                )
                await conn.copy_records_to_table(
                    "run_logs",
                    columns=["run_id", "seq", "line"],
                    records=[
                        (run_id, i, f"kubernetes_deployment.app: Still creating... [{i}s elapsed] <ok>")
                        for i in range(5000)
                    ],
                )
                await conn.execute(second)
            await conn.execute("ANALYZE")
            return env_id
        finally:
            await conn.close()

    return asyncio.run(run())


def timed_gets(port: int, path: str, count: int) -> tuple[list[float], int]:
    """Milliseconds for each of `count` sequential GETs on one keep-alive connection (after 3 warm-ups), and the
    size of the last body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times, size = [], 0
    for i in range(count + 3):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status == 200, (path, response.status, body[:300])
        size = len(body)
        if i >= 3:
            times.append(elapsed)
    conn.close()
    return times, size


def walk_api(port: int, limit: int) -> tuple[float, int]:
    """Milliseconds to page through every environment with `next`, and the number of pages."""
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path, pages, seen = f"/api/environments?limit={limit}", 0, 0
    started = time.perf_counter()
    while path:
        conn.request("GET", path)
        body = json.loads(conn.getresponse().read())
        pages += 1
        seen += len(body["environments"])
        path = body["next"] and body["next"].split(str(port), 1)[-1]
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    assert seen == ENVIRONMENTS, seen
    return elapsed, pages


def in_process(database_url: str, count: int) -> tuple[list[float], list[float]]:
    """The list handler without HTTP (SQL + rendering of 1,000 rows), and its two queries alone, in ms."""
    import asyncpg
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from ghapp.config import Settings
    from ghapp.db import reads
    from ghapp.web import dashboard, keys
    from ghapp.web.dashboard import views

    async def run() -> tuple[list[float], list[float]]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        app = web.Application()
        app[keys.SETTINGS] = Settings()
        app[keys.POOL] = pool
        dashboard.setup(app)
        handler, queries = [], []
        try:
            for i in range(count + 3):
                request = make_mocked_request("GET", f"/?limit={ENVIRONMENTS}", app=app)
                started = time.perf_counter()
                response = await views.environments(request)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status == 200 and response.body.count(b"<tr data-id=") == ENVIRONMENTS
                started = time.perf_counter()
                async with pool.acquire() as conn:
                    await reads.list_environments_newest(conn, limit=ENVIRONMENTS)
                    await reads.count_by_repository_and_status(conn)
                sql = (time.perf_counter() - started) * 1000
                if i >= 3:
                    handler.append(elapsed)
                    queries.append(sql)
        finally:
            await pool.close()
        return handler, queries

    return asyncio.run(run())


def stats(times: list[float]) -> list[str]:
    return [f"{percentile(times, 50):.1f}", f"{percentile(times, 95):.1f}", f"{max(times):.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 10 if args.quick else 50
    print_facts(machine_facts())
    with tempfile.TemporaryDirectory(prefix="ghapp-bench-dashboard-") as tmp:
        Path(tmp).chmod(0o755)  # the embedded PostgreSQL runs as another user when we are root
        serve = GhappServe(Path(tmp), GHAPP_TERRAFORM_MODULE=str(SCRIPTED_MODULE), GHAPP_ADMIN_TOKEN="bench").start()
        try:
            database_url = serve.database_url()
            env_id = seed(database_url)
            rows = []
            for label, path in [
                ("GET /?limit=1000 (all 1,000 rows)", "/?limit=1000"),
                ("GET / (default page, 200 rows)", "/"),
                ("GET /?status=failed (100 rows)", "/?status=failed"),
                ("GET /api/environments?limit=100", "/api/environments?limit=100"),
                ("GET /api/environments?limit=500", "/api/environments?limit=500"),
                ("GET /environments/{id} (5,000-line log)", f"/environments/{env_id}"),
                ("GET /api/environments/{id}", f"/api/environments/{env_id}"),
                ("GET /metrics", "/metrics"),
            ]:
                times, size = timed_gets(serve.port, path, count)
                rows.append([label, *stats(times), f"{size / 1024:.0f} KiB"])
            walk_100, pages = walk_api(serve.port, 100)
            rows.append([f"API: all 1,000 through `next` ({pages} pages of 100)", f"{walk_100:.1f}", "", "", ""])
            handler, queries = in_process(database_url, count)
            rows.append(["list handler in process, 1,000 rows (SQL + render)", *stats(handler), ""])
            rows.append(["its SQL alone (page + counts)", *stats(queries), ""])
        finally:
            serve.stop()
    print(f"\n{ENVIRONMENTS} environments, {count} sequential requests each over loopback (ms):\n")
    print(table(["request", "p50", "p95", "max", "body"], rows))
    p95 = float(rows[0][2])
    verdict = "meets" if p95 <= TARGET_MS else "MISSES"
    print(f"\nlist with 1,000 rows: p95 {p95:.1f} ms, {verdict} the target of {TARGET_MS:.0f} ms")
    return 0 if p95 <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
