"""Issue 9, the state backend: Terraform's pg backend gets a role of its own, limited to the state schema, and never
the app's database URL. A module with `backend "pg" {}` deploys and destroys on the embedded database (reached over
loopback TCP, which admits only that role) and on an external one; with the credentials a run sees, a connection can
read and write Terraform's states and nothing else."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from ghapp import db
from ghapp.config import Settings
from ghapp.db import state_role
from ghapp.db.embedded import running_url
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.conftest import ROOT
from tests.support import wait_for

PG_MODULE = ROOT / "tests" / "modules" / "pgstate"
APP_TABLES = ("environments", "runs", "run_logs", "deliveries", "commands", "schema_migrations", "state_role")


def dump_dir(base: Path) -> Path:
    """Where the pgstate module writes the environment its provisioner sees; the run user must write there."""
    path = base / "dumps"
    path.mkdir()
    path.chmod(0o1777)
    return path


def run_environment(dumps: Path, name: str) -> dict[str, str]:
    text = (dumps / f"{name}.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def assert_confined(state_url: str) -> None:
    """What a hostile module can do with the PG_CONN_STR it is given: Terraform's states, nothing else."""
    conn = await asyncpg.connect(state_url, timeout=5)
    try:
        assert await conn.fetchval("SELECT current_user") == state_role.role_name(
            await conn.fetchval("SELECT current_database()")
        )
        await conn.fetchval("SELECT count(*) FROM terraform_remote_state.states")
        for table in APP_TABLES:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM public.{table} LIMIT 1")
        denied = [
            "INSERT INTO public.deliveries (id, event) VALUES ('forged', 'push')",
            "UPDATE public.environments SET desired = 'absent'",
            "DELETE FROM public.runs",
            "CREATE ROLE intruder LOGIN SUPERUSER",
            "CREATE ROLE intruder LOGIN",
            "CREATE TABLE public.intruder (x int)",
            "CREATE TABLE terraform_remote_state.intruder (x int)",
            "CREATE SCHEMA intruder",
            "DROP TABLE terraform_remote_state.states",
            "ALTER TABLE terraform_remote_state.states ADD COLUMN x int",
        ]
        for statement in denied:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.execute(statement)
        assert not await conn.fetchval(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()


async def _ready(app):
    return app[keys.READY].is_set()


async def _env(client, env_id, status):
    body = await (await client.get(f"/api/environments/{env_id}")).json()
    return body if body["status"] == status and body["converged"] else None


async def deploy_and_destroy(client, app, deliveries, dumps: Path, forbidden: list[str]) -> str:
    """Open a PR, check the state and the run's environment, close it; return the PG_CONN_STR the run saw."""
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    env_id = (await (await client.post("/webhooks", data=body, headers=headers)).json())["environment_id"]
    env = await wait_for(lambda: _env(client, env_id, "active"), what="active")
    pool = app[keys.POOL]
    data = await pool.fetchval("SELECT data FROM terraform_remote_state.states WHERE name = $1", env["name"])
    assert data and "terraform_data" in data, "the state lands in the state schema"

    seen = run_environment(dumps, env["name"])
    state_url = seen["PG_CONN_STR"]
    assert seen["PG_SKIP_TABLE_CREATION"] == seen["PG_SKIP_SCHEMA_CREATION"] == "true"
    assert "DATABASE_URL" not in seen
    everything = "\n".join(f"{k}={v}" for k, v in seen.items())
    assert not [f for f in forbidden if f and f in everything], "the app's URL or password reached the run"
    assert urlsplit(state_url).username == state_role.role_name(await pool.fetchval("SELECT current_database()"))
    await assert_confined(state_url)

    body, headers = deliveries.signed("pull_request", deliveries.pull_request("closed"))
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    await wait_for(lambda: _env(client, env_id, "destroyed"), what="destroyed")

    async def gone():
        return not await pool.fetchval(
            "SELECT count(*) FROM terraform_remote_state.states WHERE name = $1", env["name"]
        )

    await wait_for(gone, what="the workspace to be deleted")
    return state_url


async def test_pg_backend_on_the_embedded_database(settings, pg_dir, aiohttp_client, deliveries):
    """Before: the run got the embedded server's superuser socket URL, which the run user cannot even reach."""
    dumps = dump_dir(pg_dir)
    data_dir = pg_dir / "data"
    app = create_app(
        settings.replace(
            database_url=None,
            data_dir=data_dir,
            terraform_module=PG_MODULE,
            terraform_env={"TF_VAR_env_dump_dir": str(dumps)},
        )
    )
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    app_url = app[keys.DATABASE_URL]
    state_url = await deploy_and_destroy(client, app, deliveries, dumps, [app_url, str(data_dir / "postgres")])
    parts = urlsplit(state_url)
    assert parts.hostname == "127.0.0.1" and str(parts.port) in app_url

    # the loopback port admits the state role only, and only with its password
    for user in ("postgres", "ghapp"):
        with pytest.raises(
            (asyncpg.exceptions.InvalidAuthorizationSpecificationError, asyncpg.exceptions.InvalidPasswordError)
        ):
            await asyncpg.connect(f"postgresql://{user}@127.0.0.1:{parts.port}/postgres?sslmode=disable", timeout=5)
    with pytest.raises(asyncpg.exceptions.InvalidPasswordError):
        await asyncpg.connect(state_url.replace(f":{parts.password}@", ":wrong@"), timeout=5)
    with pytest.raises(asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        await asyncpg.connect(state_url.replace("/postgres?", "/template1?"), timeout=5)
    assert running_url(data_dir / "postgres") == app_url


async def test_state_role_is_shared_by_replicas(database_url):
    """Replicas starting together: one role, one password, every replica hands Terraform the same URL."""
    pools = [await db.create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    settings = Settings(database_url=database_url)
    try:
        await asyncio.gather(*(db.migrate(p) for p in pools))
        roles = await asyncio.gather(*(db.state_backend(p, database_url, settings) for p in pools))
        again = await db.state_backend(pools[0], database_url, settings)  # a restart keeps the password
        assert len({r.url for r in [*roles, again]}) == 1
        conn = await asyncpg.connect(roles[0].url)
        assert await conn.fetchval("SELECT current_user") == roles[0].name
        await conn.close()
    finally:
        for p in pools:
            await p.close()


@pytest.fixture
async def unprivileged_url(pg_server, database_url):
    """The test's database owned by a role that may not create roles: a managed database's usual app role."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN NOCREATEROLE")
        await admin.execute(f"ALTER DATABASE {urlsplit(database_url).path.strip('/')} OWNER TO {name}")
        await admin.execute(f"ALTER SCHEMA public OWNER TO {name}")
    finally:
        await admin.close()
    parts = urlsplit(database_url)
    yield parts._replace(netloc=f"{name}@{parts.netloc.split('@', 1)[-1]}").geturl()
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {parts.path.strip('/')} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {name}")
    finally:
        await admin.close()


async def test_no_createrole_means_no_pg_conn_str(unprivileged_url, settings, aiohttp_client, caplog):
    """An app role that may not CREATE ROLE: a warning, and Terraform gets no PG_CONN_STR at all (before: the
    app's own URL)."""
    caplog.set_level(logging.WARNING)
    app = create_app(settings.replace(database_url=unprivileged_url, terraform_module=PG_MODULE))
    await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    assert app[keys.STATE_ROLE] == []
    assert any("GHAPP_TERRAFORM_ENV" in r.getMessage() and "PG_CONN_STR" in r.getMessage() for r in caplog.records)
    env = app[keys.RECONCILER].terraform.base_env()
    assert "PG_CONN_STR" not in env and not [v for v in env.values() if unprivileged_url in v]


def test_connection_string_drops_the_apps_identity():
    role = state_role.StateRole("ghapp_tfstate_app", "p/ss@w:rd")
    url = state_role.connection_string(
        "postgresql://app:s3cret@db.internal:6432/app?sslmode=verify-full&password=other&sslkey=/k", role
    )
    assert url == "postgresql://ghapp_tfstate_app:p%2Fss%40w%3Ard@db.internal:6432/app?sslmode=verify-full"
    embedded = state_role.connection_string(
        "postgresql://postgres@/postgres?host=/srv/pg&port=41234", role, "127.0.0.1"
    )
    assert embedded == "postgresql://ghapp_tfstate_app:p%2Fss%40w%3Ard@127.0.0.1:41234/postgres?sslmode=disable"


def test_role_names_fit_and_stay_apart():
    assert state_role.role_name("postgres") == "ghapp_tfstate_postgres"
    odd = state_role.role_name('My-"DB"' + "x" * 80)
    assert len(odd) <= 63 and odd.startswith("ghapp_tfstate_my__db_")
    assert state_role.role_name("a-b") != state_role.role_name("a_b")
