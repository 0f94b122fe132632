"""The embedded PostgreSQL: starts, is shared by a second ghapp process, stops, and dies with its parent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import asyncpg

from ghapp import db
from ghapp.config import Settings
from ghapp.db.embedded import EmbeddedPostgres, running_url
from tests.support import processes_with, wait_for


async def test_database_url_starts_embedded_server_and_stops_it(pg_dir):
    settings = Settings(data_dir=pg_dir)
    pgdata = pg_dir / "postgres"
    async with db.database_url(settings) as url:
        assert running_url(pgdata) == url
        async with db.database_url(settings) as second:  # a CLI command while `serve` runs attaches to it
            assert second == url
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        assert running_url(pgdata) == url, "the attached user must not stop the owner's server"
    assert running_url(pgdata) is None
    assert not processes_with(f"-D {pgdata}")


async def test_external_database_url_is_used_as_is(tmp_path):
    async with db.database_url(Settings(data_dir=tmp_path, database_url="postgresql://elsewhere/db")) as url:
        assert url == "postgresql://elsewhere/db"
    assert not (tmp_path / "postgres").exists()


async def test_migrations_apply_once_under_concurrency(database_url):
    pools = [await db.create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    try:
        import asyncio

        applied = await asyncio.gather(*(db.migrate(p) for p in pools))
        assert sorted(len(a) for a in applied) == [0, 0, len(db.migrations())]
        async with pools[0].acquire() as conn:
            assert await db.schema_is_current(conn)
    finally:
        for p in pools:
            await p.close()


async def test_server_dies_with_the_process_that_started_it(pg_dir):
    pgdata = pg_dir / "pg"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from ghapp.db.embedded import EmbeddedPostgres
        print(EmbeddedPostgres(Path({str(pgdata)!r})).start(), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        url = parent.stdout.readline().strip()
        assert url.startswith("postgresql://")
        assert processes_with(f"-D {pgdata}")
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    await wait_for(lambda: _gone(pgdata), timeout=15, what="postgres to exit after its parent was killed")

    # and the data directory is reusable right away
    server = EmbeddedPostgres(pgdata)
    assert server.start() == url
    server.stop()


async def _gone(pgdata):
    return not processes_with(f"-D {pgdata}")
