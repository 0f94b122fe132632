"""Connecting to PostgreSQL (embedded or `DATABASE_URL`) and applying migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg

from ghapp.config import Settings
from ghapp.db import state_role
from ghapp.db.embedded import LOOPBACK, EmbeddedPostgres, running_url

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x6768617070  # "ghapp": one advisory lock id, so replicas starting together migrate once

# Errors meaning "the database is not reachable right now" rather than a bug in a query.
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InternalClientError,  # a connection broken mid-protocol as the server went away
)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every `ghapp/migrations/NNN_name.sql`, in order."""
    found = []
    # Not resources.files("ghapp.db.migrations"): importing that namespace package would set `ghapp.db.migrations`
    # to the package, replacing this function after its first call.
    for item in (resources.files(__name__) / "migrations").iterdir():
        if item.name.endswith(".sql"):
            number, _, name = item.name.removesuffix(".sql").partition("_")
            found.append((int(number), name, item.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Apply pending migrations in one transaction under an advisory lock; return the versions applied."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in migrations():
            if version not in done:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                applied.append(version)
                log.info("applied migration %03d_%s", version, name)
        return applied


async def state_backend(pool: asyncpg.Pool, url: str, settings: Settings) -> state_role.StateRole | None:
    """After `migrate`: Terraform's state role, with the connection string it gets as PG_CONN_STR (over loopback
    TCP for the embedded server, whose socket the run user cannot reach); None when it cannot be made."""
    tcp_host = None if settings.database_url else LOOPBACK
    try:
        return await state_role.backend_url(pool, url, _MIGRATION_LOCK, tcp_host)
    except UNAVAILABLE:
        raise
    except asyncpg.PostgresError as e:
        log.warning("cannot prepare the Terraform state role (%s): Terraform gets no PG_CONN_STR", e)
        return None


async def schema_is_current(conn: asyncpg.Connection) -> bool:
    latest = migrations()[-1][0]
    try:
        return await conn.fetchval("SELECT max(version) FROM schema_migrations") == latest
    except asyncpg.exceptions.UndefinedTableError:
        return False


async def create_pool(url: str, **kwargs) -> asyncpg.Pool:
    kwargs = {"min_size": 1, "max_size": 10, "timeout": 5, "command_timeout": 30, **kwargs}
    return await asyncpg.create_pool(url, **kwargs)


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """`DATABASE_URL`, else the embedded server under the data dir: reused if another ghapp process runs it,
    else started here and stopped on exit."""
    if settings.database_url:
        yield settings.database_url
        return
    pgdata = settings.data_dir / "postgres"
    if url := running_url(pgdata):
        yield url
        return
    server = EmbeddedPostgres(pgdata)
    url = await asyncio.to_thread(server.start)
    try:
        yield url
    finally:
        await server.astop()


async def listen(url: str, channel: str, on_notify, on_connect=None) -> None:
    """LISTEN on `channel` for as long as the task runs, reconnecting by itself; `on_connect` after each
    (re)connection, since notifications sent meanwhile are lost (callers also poll slowly)."""
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(url, timeout=5)
            closed = asyncio.Event()
            conn.add_termination_listener(lambda _c, closed=closed: closed.set())
            await conn.add_listener(channel, on_notify)
            if on_connect is not None:
                on_connect()
            await closed.wait()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here means "reconnect later"
            log.debug("LISTEN %s: %s", channel, e)
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=2)
        await asyncio.sleep(1.0)
