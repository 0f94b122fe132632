"""`ghapp serve` as a real process on terraform/local: killed with SIGKILL mid-apply and started again, stopped with
SIGTERM; and the database going away under a running app."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from ghapp.db.embedded import EmbeddedPostgres
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.support import deliver, environment, processes_in_dir, processes_with, ready, runs, wait_for

SLOW_START = 'sleep 4; exec python3 -m http.server "$PORT" --bind 127.0.0.1'


def supervisors(env_name: str) -> list[int]:
    """The preview supervisors of one environment (terraform/local runs one per environment)."""
    return processes_with("preview.py supervise", f"/{env_name}")


async def test_sigkill_during_apply_then_restart_converges_without_duplicates(serve, deliveries, db):
    first = serve(TF_VAR_command=SLOW_START)
    await wait_for(lambda: ready(first), what="serve ready")
    env_id = (await deliver(first, deliveries, deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: _status(db, env_id, "creating"), what="apply started")
    await wait_for(lambda: _supervisor_started(env["name"]), what="the preview process to be started")

    first.kill(signal.SIGKILL)
    second = serve(TF_VAR_command=SLOW_START)
    env = await wait_for(lambda: _converged(db, env_id, "active"), timeout=60, what="active after the restart")

    assert len(supervisors(env["name"])) == 1, "a duplicate preview process was left running"
    async with aiohttp.ClientSession() as s, s.get(env["preview_url"]) as r:
        assert r.status == 200
    states = [r["state"] for r in await runs(db, env_id)]
    assert states[0] in ("abandoned", "running") and states[-1] == "succeeded", states
    assert await db.fetchval("SELECT count(*) FROM runs WHERE state = 'running'") == 0

    # the restarted app can still destroy it: no stuck lock, the process goes away
    await deliver(second, deliveries, deliveries.pull_request("closed"))
    await wait_for(lambda: _converged(db, env_id, "destroyed"), timeout=60, what="destroyed")
    assert supervisors(env["name"]) == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def _supervisor_started(name: str):
    return supervisors(name)


async def _status(db, env_id, status):
    env = await environment(db, env_id)
    return env if env.get("status") == status else None


async def _converged(db, env_id, status):
    env = await environment(db, env_id)
    return env if env.get("status") == status and env["observed_generation"] == env["generation"] else None


async def test_sigterm_interrupts_runs_after_the_grace_and_releases_leases(serve, deliveries, db):
    proc = serve(TF_VAR_command="sleep 60")
    await wait_for(lambda: ready(proc), what="serve ready")
    env_id = (await deliver(proc, deliveries, deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _status(db, env_id, "creating"), what="apply started")

    proc.kill(signal.SIGTERM)
    assert proc.proc.returncode == 0, proc.log()[-2000:]
    env = await environment(db, env_id)
    assert env["lease_owner"] is None and env["status"] == "pending"
    assert [r["state"] for r in await runs(db, env_id)] == ["interrupted"]
    workdir = Path(proc.env["GHAPP_DATA_DIR"]) / "terraform"
    terraform = [p for p in processes_in_dir(workdir) if _cmdline(p).startswith(proc.env["GHAPP_TERRAFORM_BIN"])]
    assert terraform == [], "terraform left running"


async def test_database_outage_gives_503_then_recovers_by_itself(aiohttp_client, settings, deliveries, pg_dir):
    server = EmbeddedPostgres(pg_dir / "data")
    url = server.start()
    try:
        app = create_app(settings.replace(database_url=url))
        client = await aiohttp_client(app)
        await wait_for(lambda: _is_set(app), what="migrations")

        server.stop()
        body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
        resp = await client.post("/webhooks", data=body, headers=headers)
        assert resp.status == 503
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/api/environments")).status == 503
        assert (await client.get("/healthz")).status == 200

        server.start()
        resp = await client.post("/webhooks", data=body, headers=headers)  # GitHub's redelivery
        assert resp.status == 202, await resp.text()
        env_id = (await resp.json())["environment_id"]
        assert (await client.get("/readyz")).status == 200

        async def active():
            r = await client.get(f"/api/environments/{env_id}")
            return r.status == 200 and (await r.json())["status"] == "active"

        await wait_for(active, timeout=30, what="active after the database came back")
    finally:
        server.stop()


async def _is_set(app):
    return app[keys.READY].is_set()


async def test_database_down_at_start_then_up(aiohttp_client, settings, pg_dir):
    server = EmbeddedPostgres(pg_dir / "data")
    url = server.start()
    server.stop()
    try:
        app = create_app(settings.replace(database_url=url))
        client = await aiohttp_client(app)
        assert (await client.get("/readyz")).status == 503
        server.start()
        await wait_for(lambda: _is_set(app), timeout=30, what="migrations once the database is up")
        assert (await client.get("/readyz")).status == 200
    finally:
        server.stop()
