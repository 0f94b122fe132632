"""The aiohttp application: routes, and the lifetimes of the database, pool and workers in `cleanup_ctx`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from ghapp import db, isolation
from ghapp.config import Settings
from ghapp.core.model import Environment
from ghapp.gateway import access
from ghapp.gateway import app as preview_gateway
from ghapp.gateway.keys import ENVIRONMENT
from ghapp.gateway.wake import Waker
from ghapp.github.client import USER_AGENT, GitHubApp
from ghapp.github.repository import GitHubRepositoryFiles
from ghapp.github.sink import GitHubSink
from ghapp.sources import SourceLimits, Sources
from ghapp.terraform import Terraform, allowed, find_binary
from ghapp.web import api, auth, dashboard, keys, metrics, webhooks
from ghapp.web.intake import GroupCommit
from ghapp.workers.commands import CommandProcessor
from ghapp.workers.configuration import ModulePlanner, RepositoryConfiguration
from ghapp.workers.loops import run_loop
from ghapp.workers.periodic import Resync, expire_and_prune, prune_sources, sleep_check_interval, sleep_idle
from ghapp.workers.publisher import LogSink, Publisher, Sink
from ghapp.workers.reconciler import Reconciler
from ghapp.workers.resolve import Resolver
from ghapp.workers.rules import GitHubRuleChecker

log = logging.getLogger(__name__)


@web.middleware
async def database_errors(request: web.Request, handler) -> web.StreamResponse:
    """Any request that finds the database unreachable answers 503, never 500."""
    try:
        return await handler(request)
    except db.UNAVAILABLE as e:
        log.warning("%s %s: database unavailable (%s)", request.method, request.path, type(e).__name__)
        return web.json_response({"error": "database unavailable"}, status=503)


MAX_OTHER_BODY = 64 * 1024  # every route but /webhooks takes small forms at most
MAX_QUERY_VALUE = 1000
SOURCES_PRUNE_INTERVAL = 600.0  # seconds between two passes over this replica's source checkouts


@web.middleware
async def request_limits(request: web.Request, handler) -> web.StreamResponse:
    """Bad query strings are 400 (PostgreSQL cannot store NUL); bodies of routes other than /webhooks (which reads
    its own, up to 25 MB) are read here whole, at most 64 KB and within GHAPP_BODY_TIMEOUT, before any handler."""
    for name, value in request.query.items():
        if len(value) > MAX_QUERY_VALUE or not _storable(name) or not _storable(value):
            return web.json_response({"error": f"bad query parameter {name[:40]!r}"}, status=400)
    if request.path != "/webhooks" and request.can_read_body:
        timeout = request.app[keys.SETTINGS].body_timeout
        try:
            async with asyncio.timeout(timeout):
                await request.read()  # cached: post() and json() read it from there; over 64 KB: 413
        except TimeoutError:
            return web.json_response({"error": f"the body was not received within {timeout:g} s"}, status=408)
        except ConnectionError:
            return web.json_response({"error": webhooks.DISCONNECTED}, status=400)
    return await handler(request)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def create_app(
    settings: Settings,
    *,
    workers: bool = True,
    gateway: bool = False,
    sources: Sources | None = None,
    resolver: Resolver | None = None,
) -> web.Application:
    """The whole app; `gateway`: also the preview gateway on GHAPP_GATEWAY_PORT (`ghapp serve`, `ghapp demo`);
    `sources` and `resolver` replace the ones the workers would make (tests)."""
    app = web.Application(
        client_max_size=MAX_OTHER_BODY,  # /webhooks reads its own body, up to webhooks.MAX_BODY
        middlewares=[database_errors, request_limits, auth.sessions_middleware],
    )
    app[keys.SETTINGS] = settings
    app[keys.READY] = asyncio.Event()
    app[keys.THROTTLE] = auth.Throttle()
    app[keys.DRAINS] = []
    if sources is not None:
        app[keys.SOURCES] = sources
    if resolver is not None:
        app[keys.RESOLVER] = resolver
    app.on_shutdown.append(_drain)
    metrics.setup(app)
    app.router.add_post("/webhooks", metrics.counting_deliveries(webhooks.receive))
    app.router.add_routes(api.routes)
    dashboard.setup(app)
    app.cleanup_ctx.append(_database)
    if gateway:
        _guarded_gateway(app)
    if workers:
        app.cleanup_ctx.append(_github)
        app.cleanup_ctx.append(_workers)
    access.setup(app)  # last: it uses the pool and, online, the App client
    return app


def _guarded_gateway(app: web.Application) -> None:
    """The preview gateway with its guards in order: who may see the preview (sign-in, access tokens), then waking
    it when it sleeps (so nobody who may not see a preview can wake it). The preview never sees ghapp's cookie or
    token."""

    async def start_waker(app: web.Application) -> None:
        waker = Waker(app[keys.POOL], app[keys.SETTINGS])

        def fresh(request: web.Request, env: Environment) -> None:
            request[ENVIRONMENT] = env
            gateway.forget(env.name)

        waker.fresh = fresh
        gateway.guards.append(waker)

        async def close(_app: web.Application) -> None:
            await waker.close()

        app.on_shutdown.append(close)

    app.on_startup.append(start_waker)  # before the gateway starts listening
    gateway = preview_gateway.setup(app)
    gateway.share(access.ACCESS)
    gateway.guards.append(access.check_access)
    gateway.request_filters.append(access.forwarded_headers)
    gateway.reserved.router.add_get("/session", access.start_session)
    gateway.reserved.router.add_get("/signin", access.preview_sign_in)


async def _drain(app: web.Application) -> None:
    """SIGTERM: Terraform runs, publishes and commands under way all get the shutdown grace, together; what is still
    running after it is interrupted or cancelled by the cleanup."""
    grace = app[keys.SETTINGS].shutdown_grace
    log.info("shutting down: work under way may finish within %.0fs", grace)
    await asyncio.gather(*(drain(grace) for drain in app[keys.DRAINS]))
    log.info("shutting down: drained")


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    async with db.database_url(settings) as url:
        app[keys.DATABASE_URL] = url
        pool = await db.create_pool(url, min_size=0, max_size=max(10, settings.max_parallel_runs * 2 + 4))
        app[keys.POOL] = pool
        app[keys.STATE_ROLE] = []
        bootstrap = asyncio.create_task(_migrate_when_reachable(app))
        app[keys.INTAKE] = group_commit = GroupCommit(pool, settings)
        group_commit.start()
        try:
            yield
        finally:
            bootstrap.cancel()
            await asyncio.gather(bootstrap, return_exceptions=True)
            await group_commit.close()
            await pool.close()


async def _migrate_when_reachable(app: web.Application) -> None:
    """Apply migrations as soon as the database answers; until then webhooks get 503 and /readyz says why."""
    delay = 0.5
    while True:
        try:
            await db.migrate(app[keys.POOL])
            if role := await db.state_backend(app[keys.POOL], app[keys.DATABASE_URL], app[keys.SETTINGS]):
                app[keys.STATE_ROLE][:] = [role]
            app[keys.READY].set()
            return
        except db.UNAVAILABLE as e:
            log.warning("database not reachable yet (%s); retrying in %.0fs", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)


async def _github(app: web.Application) -> AsyncIterator[None]:
    """One HTTP session for the app's lifetime; publishing to pull requests (or to the log, offline), the command
    processor and the resync (online only), and the TTL reaper."""
    settings = app[keys.SETTINGS]
    session = None
    tasks = []
    sink: Sink
    if settings.offline:
        sink = LogSink()
    else:
        session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=30),
            trace_configs=[app[keys.METRICS].github_trace()],
        )
        assert settings.app_id and settings.private_key  # not offline; Settings.from_env requires the key with the id
        github = GitHubApp(session, settings.app_id, settings.private_key, settings.github_api_url)
        app[keys.GITHUB] = github
        sink = GitHubSink(github, settings.base_url)
        processor = CommandProcessor(app[keys.POOL], app[keys.DATABASE_URL], github, settings)
        app[keys.DRAINS].append(processor.drain)
        tasks.append(_when_ready(app, processor.process_forever()))
        tasks.append(_when_ready(app, Resync(app[keys.POOL], github, settings).resync_forever()))
    every = min(60.0, max(1.0, settings.env_ttl / 20))
    remaining = None if settings.offline else app[keys.GITHUB].budget.remaining

    async def expiry() -> float | None:
        return await expire_and_prune(app[keys.POOL], settings, remaining)

    tasks.append(_when_ready(app, run_loop("expiry", expiry, poll=every)))
    sleeper = run_loop("sleeper", lambda: sleep_idle(app[keys.POOL], settings), poll=sleep_check_interval(settings))
    tasks.append(_when_ready(app, sleeper))
    publisher = Publisher(app[keys.POOL], app[keys.DATABASE_URL], sink, settings)
    app[keys.DRAINS].append(publisher.drain)
    tasks.append(_when_ready(app, publisher.publish_forever()))
    running = [asyncio.create_task(t) for t in tasks]
    try:
        yield
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if session is not None:
            await session.close()


async def _when_ready(app: web.Application, loop: Coroutine[Any, Any, None]) -> None:
    """Start `loop` once the database is migrated."""
    try:
        await app[keys.READY].wait()
    except asyncio.CancelledError:
        loop.close()
        raise
    await loop


async def _workers(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    passed = {k: v for k, v in os.environ.items() if allowed(k, settings.terraform_env_allow)}
    terraform = Terraform(
        settings.terraform_module,
        settings.data_dir,
        find_binary(settings.terraform_bin),
        extra_env=settings.terraform_env,
        interrupt_grace=settings.interrupt_grace,
        allow_env=settings.terraform_env_allow,
        run_as=isolation.run_user(),
        redact=isolation.Redactor.for_settings(settings, {**passed, **settings.terraform_env}),
        catalog=settings.modules_dir,
    )
    github_files = GitHubRepositoryFiles(app[keys.GITHUB], settings.source_max_bytes) if keys.GITHUB in app else None
    files = app.get(keys.REPOSITORY_FILES) or github_files
    if keys.SOURCES not in app:
        app[keys.SOURCES] = Sources(
            settings.data_dir / "sources", files, SourceLimits.of(settings), run_user=isolation.run_user()
        )
    sources = app[keys.SOURCES]
    resolver = app.get(keys.RESOLVER) or Resolver(
        configuration=app.get(keys.CONFIGURATION) or RepositoryConfiguration(settings, files),
        rules=GitHubRuleChecker(app.get(keys.GITHUB)),  # offline: the rules that need GitHub are skipped
        planner=ModulePlanner(settings, sources=sources),
    )
    reconciler = Reconciler(
        app[keys.POOL],
        app[keys.DATABASE_URL],
        terraform,
        settings,
        on_run_finished=app[keys.METRICS].run_finished,
        resolver=resolver,
        on_woken=app[keys.METRICS].woken,
    )
    app[keys.RECONCILER] = reconciler
    app[keys.DRAINS].append(reconciler.drain)

    async def start_when_ready() -> None:
        await app[keys.READY].wait()
        for role in app[keys.STATE_ROLE]:  # PG_CONN_STR: the state role's, never the app's URL
            terraform.state_url = role.url
            terraform.redact = isolation.Redactor([*terraform.redact.values, role.password, role.url])
        log.info(
            "worker %s: up to %d parallel runs, module %s, terraform %s",
            reconciler.owner,
            settings.max_parallel_runs,
            settings.terraform_module,
            terraform.binary,
        )
        await asyncio.gather(
            reconciler.reconcile_forever(),
            run_loop("sources", lambda: prune_sources(app[keys.POOL], sources), poll=SOURCES_PRUNE_INTERVAL),
        )

    task = asyncio.create_task(start_when_ready())
    try:
        yield
    finally:
        await reconciler.drain(settings.shutdown_grace)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
