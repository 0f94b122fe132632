"""Benchmark: the plans and times of the fair claim, the preview queue, retention and the expiry reminder on thousands
of rows (issue 9, finding 7; issue 10). Run by hand: `python -m bench.claim_plan [--environments 5000]`; prints
each query's EXPLAIN ANALYZE and the median of 20 executions. An embedded PostgreSQL in a temp dir; rows inserted
directly."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from ghapp import db
from ghapp.db import desired, retention, runs
from ghapp.db.embedded import EmbeddedPostgres

SETUP = """
-- $1 environments over 200 repositories and 300 authors: 10 % unconverged and due, 1 % leased (in flight),
-- every 50th a new preview not started yet, the rest converged (active or destroyed).
INSERT INTO environments (repo_id, repository, pr_number, author, desired, desired_sha, provisioned, status,
                          generation, observed_generation, lease_owner, lease_until, next_attempt_at, created_at)
SELECT g % 200, 'o/r' || (g % 200), g, 'u' || (g % 300),
       CASE WHEN g % 3 = 0 THEN 'absent' ELSE 'present' END, 'abc',
       g % 50 <> 7 AND g % 3 <> 0, CASE WHEN g % 3 = 0 THEN 'destroyed' ELSE 'active' END,
       2, CASE WHEN g % 10 = 1 OR g % 50 = 7 THEN 1 ELSE 2 END,
       CASE WHEN g % 100 = 1 THEN 'w' END, CASE WHEN g % 100 = 1 THEN now() + interval '1 hour' END,
       now() - make_interval(secs => g), now() - make_interval(secs => g)
FROM generate_series(1, $1) g;
"""


async def measure(conn: asyncpg.Connection, label: str, sql: str, *args: object) -> None:
    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF) " + sql, *args)
    times = []
    for _ in range(20):
        tx = conn.transaction()  # rolled back: every execution claims from the same rows
        await tx.start()
        t = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append((time.perf_counter() - t) * 1000)
        await tx.rollback()
    print(f"### {label}: median {statistics.median(times):.2f} ms\n")
    print("```")
    print("\n".join(r[0] for r in plan))
    print("```\n")


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ghapp-bench-") as tmp:
        Path(tmp).chmod(0o755)
        server = EmbeddedPostgres(Path(tmp) / "data")
        url = server.start()
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            await db.migrate(pool)
            async with pool.acquire() as conn:
                await conn.execute(SETUP, n)  # then 20 runs each, 20 log lines per run
                await conn.execute(
                    """INSERT INTO runs (environment_id, action, generation, owner, state, started_at, finished_at)
                       SELECT e.id, 'apply', 1, 'w', 'succeeded', now() - make_interval(days => r),
                              now() - make_interval(days => r)
                       FROM environments e, generate_series(1, 20) r"""
                )
                await conn.execute(
                    "INSERT INTO run_logs (run_id, seq, line) SELECT id, s, 'x' FROM runs, generate_series(1, 20) s"
                )
                await conn.execute("ANALYZE")
                counts = await conn.fetchrow(
                    """SELECT count(*) AS envs, count(*) FILTER (WHERE generation > observed_generation) AS unconverged,
                              (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM run_logs) AS logs
                       FROM environments"""
                )
                print(f"{dict(counts)}\n")
                await measure(conn, "claim (max_previews = 3)", runs._CLAIM, "bench", 60.0, 3)
                await measure(conn, "claim (no cap)", runs._CLAIM, "bench", 60.0, None)
                await measure(conn, "seconds_until_due (max_previews = 3)", runs._DUE, 3)
                await measure(conn, "place in line", "SELECT live, position FROM preview_queue WHERE id = $1", 7)
                await measure(conn, "old runs (retention 10 days)", retention._OLD_RUNS, 10 * 86400.0, 100)
                # Expiries spread over the next 3.5 days, one a minute: about 120 fall within a 2 h reminder.
                await conn.execute(
                    """UPDATE environments SET expires_at = now() + make_interval(secs => id * 60)
                       WHERE desired = 'present'"""
                )
                await conn.execute("ANALYZE environments")
                await measure(conn, "expiry reminder due (2 h)", desired._REMINDER_DUE, 7200.0)
            await pool.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=5000)
    asyncio.run(main(parser.parse_args().environments))
