"""Shared fixtures: a real PostgreSQL (one server per session, a fresh database per test), real Terraform,
real HTTP servers, and the real GitHub deliveries from tests/github/webhooks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from ghapp.config import Settings
from ghapp.db import state_role
from ghapp.db.embedded import EmbeddedPostgres
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.fake_github import fake_github  # noqa: F401 - the fixture, shared by every test module
from tests.support import ROOT, Deliveries, ServeProcess, free_port, preview_port_base, processes_with, wait_for

SCRIPTED_MODULE = ROOT / "tests" / "modules" / "scripted"
LOCAL_MODULE = ROOT / "terraform" / "local"
WEBHOOK_SECRET = "test-webhook-secret"

# Fixtures that start PostgreSQL, Terraform or a server: a test marked `fast` (`pytest -m fast`) may use none of them.
SLOW_FIXTURES = frozenset(
    {
        "pg_server",
        "pg_dir",
        "database_url",
        "db",
        "terraform_bin",
        "start_app",
        "serve",
        "fake_github",
        "aiohttp_client",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wrong = [
        f"{item.nodeid}: {', '.join(sorted(SLOW_FIXTURES & set(item.fixturenames)))}"
        for item in items
        if isinstance(item, pytest.Function)
        and item.get_closest_marker("fast")
        and SLOW_FIXTURES & set(item.fixturenames)
    ]
    if wrong:
        raise pytest.UsageError("tests marked fast use a slow fixture:\n" + "\n".join(wrong))


def _pg_dir() -> Path:
    """A directory the embedded server's unprivileged user can reach. Not under pytest's tmp_path: pytest keeps
    its base directory at mode 0700, and another pytest session starting resets it."""
    path = Path(tempfile.mkdtemp(prefix="ghapp-test-pg-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def pg_dir():
    path = _pg_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A PostgreSQL server for the session: `GHAPP_TEST_DATABASE_URL` if set, else the embedded one."""
    if url := os.environ.get("GHAPP_TEST_DATABASE_URL"):
        yield url
        return
    path = _pg_dir()
    server = EmbeddedPostgres(path / "data")
    url = server.start()
    yield url
    server.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def database_url(pg_server) -> str:
    """A fresh, empty database on the session's server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(pg_server, name)
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{state_role.role_name(name)}"')  # the app made it (issue 9)
    finally:
        await admin.close()


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


@pytest.fixture
def terraform_bin() -> str:
    found = os.environ.get("GHAPP_TERRAFORM_BIN") or shutil.which("terraform") or shutil.which("ghapp-terraform")
    assert found, "no Terraform: `pip install -e '.[dev]'` installs ghapp-terraform"
    return found


@pytest.fixture
def settings(tmp_path, database_url, terraform_bin) -> Settings:
    """Settings for a test app: its own data dir and database, the scripted module, short timings."""
    return Settings(
        webhook_secret=WEBHOOK_SECRET,
        database_url=database_url,
        data_dir=tmp_path / "data",
        terraform_module=SCRIPTED_MODULE,
        terraform_bin=terraform_bin,
        max_parallel_runs=4,
        lease_ttl=3.0,
        poll_interval=0.5,
        retry_base=0.3,
        retry_cap=2.0,
        max_attempts=4,
        interrupt_grace=5.0,
        shutdown_grace=5.0,
        push_settle=1.0,
    )


@pytest.fixture
def start_app(settings, aiohttp_client):
    """Start the whole app (a real HTTP server and client) on the test's database with `settings` changed by
    keyword arguments; returns the client once migrations are applied. `workers=False`: no Terraform runs."""

    async def start(*, workers: bool = True, **changes):
        app = create_app(settings.replace(**changes), workers=workers)
        client = await aiohttp_client(app)
        await wait_for(lambda: _ready(app), what="migrations")
        return client

    return start


async def _ready(app):
    return app[keys.READY].is_set()


@pytest.fixture
def serve(tmp_path, database_url, terraform_bin):
    """Start `ghapp serve` processes on terraform/local, sharing one data dir and database; all are killed at the
    end, with whatever previews they left."""
    started: list[ServeProcess] = []
    data_dir = tmp_path / "data"
    port_base = preview_port_base()

    def make(**extra) -> ServeProcess:
        env = {
            **{k: v for k, v in os.environ.items() if k != "GITHUB_APP_ID"},  # offline unless `extra` says
            "DATABASE_URL": database_url,
            "GHAPP_DATA_DIR": str(data_dir),
            "GHAPP_TERRAFORM_MODULE": str(LOCAL_MODULE),
            "GHAPP_TERRAFORM_BIN": terraform_bin,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GHAPP_LEASE_TTL": "3s",
            "GHAPP_POLL_INTERVAL": "0.5s",
            "GHAPP_PUSH_SETTLE": "0",
            "GHAPP_SHUTDOWN_GRACE": "2s",
            "TF_VAR_port_base": str(port_base),
            **extra,
        }
        port = free_port()
        env["GHAPP_PORT"] = str(port)
        proc = ServeProcess(env, port, tmp_path / f"serve-{len(started)}.log")
        proc.start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()
    for pid in processes_with(str(data_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries(WEBHOOK_SECRET)


@pytest.fixture
async def db(database_url):
    """A pool on the test's database (the app under test migrates it)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()
