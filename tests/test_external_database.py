"""ghapp against a PostgreSQL server reached over TCP through DATABASE_URL (with a password), with a preview module
that keeps its Terraform state in that database (`backend "pg" {}` and the PG_CONN_STR the app exports: the state
role's, never the app's URL)."""

from __future__ import annotations

import secrets

import pytest

from ghapp.db.embedded import EmbeddedPostgres
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.conftest import ROOT
from tests.support import free_port, wait_for
from tests.test_state_role import deploy_and_destroy, dump_dir

PG_MODULE = ROOT / "tests" / "modules" / "pgstate"
APP_PASSWORD = f"app-{secrets.token_hex(8)}"


@pytest.fixture
def tcp_server(pg_dir):
    server = EmbeddedPostgres(pg_dir / "tcp", tcp_port=free_port(), password=APP_PASSWORD)
    yield server.start()
    server.stop()


async def test_pg_backend_gets_the_state_role_not_the_apps_url(
    tcp_server, pg_dir, settings, aiohttp_client, deliveries
):
    """Issue 9: before, PG_CONN_STR was the app's DATABASE_URL, password and all."""
    dumps = dump_dir(pg_dir)
    app = create_app(
        settings.replace(
            database_url=tcp_server, terraform_module=PG_MODULE, terraform_env={"TF_VAR_env_dump_dir": str(dumps)}
        )
    )
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    assert f":{APP_PASSWORD}@127.0.0.1:" in tcp_server
    state_url = await deploy_and_destroy(client, app, deliveries, dumps, [tcp_server, APP_PASSWORD])
    assert state_url.split("@", 1)[1] == tcp_server.split("@", 1)[1], "same server, port and options as the app's"


async def test_pg_backend_state_lives_in_the_apps_database(tcp_server, settings, aiohttp_client, deliveries):
    app = create_app(settings.replace(database_url=tcp_server, terraform_module=PG_MODULE))
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    assert tcp_server.startswith("postgresql://postgres:")

    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    env_id = (await (await client.post("/webhooks", data=body, headers=headers)).json())["environment_id"]
    env = await wait_for(lambda: _env(client, env_id, "active"), what="active")
    assert env["preview_url"] == f"http://{env['name']}.preview.test/"

    pool = app[keys.POOL]
    states = await pool.fetch("SELECT name, data FROM terraform_remote_state.states")
    assert [r["name"] for r in states if r["name"] == env["name"]], states
    assert "terraform_data" in next(r["data"] for r in states if r["name"] == env["name"])
    workdir = settings.data_dir / "terraform" / PG_MODULE.name
    assert not (workdir / "terraform.tfstate.d").exists(), "state must not be on local disk"
    assert tcp_server not in (workdir / ".terraform" / "terraform.tfstate").read_text(), "connection string leaked"

    body, headers = deliveries.signed("pull_request", deliveries.pull_request("closed"))
    assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    await wait_for(lambda: _env(client, env_id, "destroyed"), what="destroyed")
    await wait_for(lambda: _no_state(pool, env["name"]), what="the workspace to be deleted")


async def _ready(app):
    return app[keys.READY].is_set()


async def _env(client, env_id, status):
    r = await client.get(f"/api/environments/{env_id}")
    body = await r.json()
    return body if body["status"] == status and body["converged"] else None


async def _no_state(pool, name):
    return not await pool.fetchval("SELECT count(*) FROM terraform_remote_state.states WHERE name = $1", name)
