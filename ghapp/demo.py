"""`ghapp demo`: the embedded default end to end on one machine.

Embedded PostgreSQL, `terraform/local`, a replayed real `pull_request.opened` delivery for a sample repository
(`demo_data/sample-repo`, read from the package instead of GitHub), whose own code serves the preview; prints the
preview URL and keeps serving until Ctrl-C, then destroys what it created and stops everything it started. The
demo holds an exclusive lock on a file for its whole life and its previews stop when nobody holds it, so even a
second Ctrl-C or a SIGKILL leaves no preview process behind (and PostgreSQL dies with its parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import secrets
import shutil
import signal
import socket
import sys
from importlib import resources
from pathlib import Path

from aiohttp import web

from ghapp import deliveries, isolation
from ghapp.config import Settings
from ghapp.core.contract import Status, short_sha
from ghapp.core.model import Environment
from ghapp.db import desired, reads
from ghapp.demo_repository import LocalRepositoryFiles
from ghapp.sources import SourceLimits, Sources
from ghapp.web import keys
from ghapp.web.app import create_app

log = logging.getLogger("ghapp.demo")

DESTROY_WAIT = 120.0


def module_dir(configured: Path) -> Path:
    """The configured module, else the `terraform/local` next to this package (a source checkout)."""
    if configured.is_dir():
        return configured
    bundled = Path(__file__).resolve().parent.parent / "terraform" / "local"
    if bundled.is_dir():
        return bundled
    raise SystemExit(f"ghapp demo: no Terraform module at {configured}; set GHAPP_TERRAFORM_MODULE")


def sample_delivery() -> bytes:
    return resources.files("ghapp.demo_data").joinpath("pull_request.opened.json").read_bytes()


def sample_repository() -> Path:
    return Path(str(resources.files("ghapp.demo_data").joinpath("sample-repo")))


def run_demo(settings: Settings) -> int:
    home = settings.data_dir / "demo"
    home.mkdir(parents=True, exist_ok=True)
    lock_file = open(home / "demo.lock", "w")  # held until this process ends, however it ends
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"ghapp demo: another demo is running on {home}", file=sys.stderr)
        return 1
    for leftover in ("state", "postgres"):  # a previous demo's throwaway data
        shutil.rmtree(home / leftover, ignore_errors=True)
    demo = settings.replace(
        gateway_port=_free_or_any(settings.host, settings.gateway_port),
        app_id=None,
        database_url=None,
        data_dir=home / "state",
        webhook_secret=secrets.token_hex(16),
        terraform_module=module_dir(settings.terraform_module),
        push_settle=0.0,
        terraform_env={**settings.terraform_env, "TF_VAR_lifetime_lock": str(home / "demo.lock")},
    )
    try:
        return asyncio.run(_demo(demo))
    except KeyboardInterrupt:
        return 130
    finally:
        lock_file.close()


async def _demo(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            print("\nstopping now; previews stop by themselves", flush=True)
            hurry.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    files = LocalRepositoryFiles(sample_repository())  # its .github/preview.yml and its code, as GitHub would
    sources = Sources(settings.data_dir / "sources", files, SourceLimits.of(settings), run_user=isolation.run_user())
    app = create_app(settings, sources=sources, gateway=True)
    app[keys.REPOSITORY_FILES] = files
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        port = await _listen(runner, settings)
        base = f"http://{settings.host}:{port}"
        print(f"ghapp demo: serving on {base} (data in {settings.data_dir.parent})", flush=True)
        await app[keys.READY].wait()
        status, text = await deliveries.send(
            f"{base}/webhooks", "pull_request", sample_delivery(), settings.webhook_secret
        )
        if status != 202:
            print(f"ghapp demo: the replayed delivery was refused: {status} {text}", file=sys.stderr)
            return 1
        env_id = json.loads(text)["environment_id"]
        env = await _until(stop, lambda: _settled(app, env_id))
        if env is not None:
            _announce(env, base, app[keys.GATEWAY].url(env.name))
            await stop.wait()
        print("\nghapp demo: destroying the demo environments (Ctrl-C again to skip)", flush=True)
        await _destroy_all(app, hurry)
        return 0
    finally:
        await runner.cleanup()
        print("ghapp demo: stopped", flush=True)


async def _listen(runner: web.AppRunner, settings: Settings) -> int:
    """Listen on GHAPP_PORT, or any free port if it is taken."""
    for port in (settings.port, 0):
        site = web.TCPSite(runner, settings.host, port)
        try:
            await site.start()
        except OSError as e:
            log.warning("port %d is taken (%s); using a free port", port, e.strerror)
            continue
        return runner.addresses[0][1]  # the one site that started (a site that failed to start has no socket)
    raise SystemExit("ghapp demo: cannot listen")


async def _settled(app: web.Application, env_id: int):
    async with app[keys.POOL].acquire() as conn:
        env = await reads.get_environment(conn, env_id)
    return env if env and env.status in (Status.ACTIVE, Status.FAILED) else None


async def _until(stop: asyncio.Event, check, interval: float = 0.2):
    while not stop.is_set():
        if found := await check():
            return found
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return None


def _announce(env: Environment, base: str, gateway_url: str) -> None:
    if env.status != Status.ACTIVE:
        print(
            f"\nghapp demo: the preview failed: {env.last_error}\n  run log: {base}/api/environments/{env.id}",
            flush=True,
        )
        return
    print(
        f"""
  Preview environment for {env.repository}#{env.pr_number} ({short_sha(env.deployed_sha)}) is active:

    preview      {gateway_url}
    (module's    {env.preview_url}, behind the gateway)
                 served by the pull request's own code: {sample_repository()} at that commit
    dashboard    {base}/environments/{env.id}
    all          {base}/
    API          {base}/api/environments

  Press Ctrl-C to destroy it and stop.
""",
        flush=True,
    )


def _free_or_any(host: str, port: int) -> int:
    """`port` if nothing listens on it, else a free port (the demo's gateway must not fail on a busy 8081)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            log.warning("port %d is taken; the preview gateway uses a free port", port)
            probe.bind((host, 0))
        return probe.getsockname()[1]


async def _destroy_all(app: web.Application, hurry: asyncio.Event) -> None:
    async with app[keys.POOL].acquire() as conn:
        envs = await reads.list_environments(conn, limit=10_000)
        for env in envs:
            await desired.request_destroy(conn, env.id)

    async def all_destroyed():
        async with app[keys.POOL].acquire() as conn:
            return await reads.all_converged_and_gone(conn)

    try:
        await asyncio.wait_for(_until(hurry, all_destroyed), DESTROY_WAIT)
    except TimeoutError:
        log.warning("environments not destroyed after %.0fs; their previews stop when the demo exits", DESTROY_WAIT)
