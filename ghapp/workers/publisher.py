"""The publisher: makes what the pull request shows match each environment's state.

Level-triggered like the reconciler: every change of an environment gets a new `version` (a trigger does it);
the publisher renders the environment, tells GitHub what differs from what it last published (kept in
`published`), and records the version it published. GitHub being down delays this and nothing else: the next
attempt publishes the state of that moment. Offline, the same text goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Protocol

import asyncpg

from ghapp import db
from ghapp.config import Settings
from ghapp.core import render
from ghapp.core.contract import NOTIFY_CHANNEL
from ghapp.db import UNAVAILABLE, store
from ghapp.db.store import Environment

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0  # seconds between two updates of a running environment (rate limits)
BATCH = 20
WAKE_COALESCE = 0.1
_LOCK_SPACE = 0x70756231  # advisory locks: one publisher per environment across replicas


class Sink(Protocol):
    async def publish(self, env: Environment, view: render.Presentation, published: dict) -> None:
        """Bring the pull request in line with `view`; record what was done in `published` as it goes."""


async def snapshot(conn: asyncpg.Connection, env: Environment, settings: Settings) -> render.Snapshot:
    run = await conn.fetchrow(
        "SELECT id, action, started_at, finished_at FROM runs WHERE environment_id = $1 ORDER BY id DESC LIMIT 1",
        env.id,
    )
    tail = ""
    if run is not None and env.status == "failed":
        lines = await conn.fetch(
            # a provisioner's output (the preview's own code) is never shown on GitHub, only on the dashboard
            "SELECT line FROM run_logs WHERE run_id = $1 AND source = 'terraform' ORDER BY seq DESC LIMIT $2",
            run["id"],
            render.LOG_LINES,
        )
        tail = "\n".join(r["line"] for r in reversed(lines))
    return render.Snapshot(
        repository=env.repository,
        pr_number=env.pr_number,
        status=env.status,
        desired=env.desired,
        head_sha=env.head_sha or env.desired_sha or "",
        desired_sha=env.desired_sha,
        deployed_sha=env.deployed_sha,
        preview_url=env.preview_url,
        outputs=env.outputs,
        progress=env.progress,
        awaiting_approval=awaiting_approval(env, settings),
        attempts=env.attempts,
        retrying_at=env.next_attempt_at if env.status == "failed" else None,
        last_error=env.last_error,
        updated_at=env.updated_at,
        expires_at=env.expires_at,
        run_action=run["action"] if run else None,
        run_started_at=run["started_at"] if run else None,
        run_finished_at=run["finished_at"] if run else None,
        log_tail=tail,
        details_url=f"{settings.base_url}/environments/{env.id}",
        expired=env.expired_at is not None,
    )


def awaiting_approval(env: Environment, settings: Settings) -> bool:
    return (
        env.is_fork
        and not settings.allow_forks
        and env.desired_sha != env.head_sha
        and env.approved_sha != env.head_sha
        and env.status != "destroying"
    )


def present(snap: render.Snapshot, settings: Settings) -> render.Presentation:
    return render.Presentation(render.check_run(snap), render.comment(snap, settings.env_ttl), render.deployment(snap))


class Publisher:
    def __init__(self, pool: asyncpg.Pool, database_url: str, sink: Sink, settings: Settings):
        self.pool = pool
        self.database_url = database_url
        self.sink = sink
        self.settings = settings
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(db.listen(self.database_url, NOTIFY_CHANNEL, lambda *_a: self._wake.set()))
        try:
            while True:
                try:
                    busy = await self.publish_due()
                except UNAVAILABLE as e:
                    log.warning("publisher: database unavailable (%s)", e)
                    busy = False
                if not busy:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(1.0, self.settings.poll_interval))
                        await asyncio.sleep(WAKE_COALESCE)  # one pass for a burst of changes
                    self._wake.clear()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def publish_due(self) -> bool:
        """Publish every environment whose state changed; True if there was any."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT * FROM environments WHERE version > published_version AND publish_after <= now()
                   ORDER BY publish_after LIMIT $1""",
                BATCH,
            )
        if not rows:
            return False
        await asyncio.gather(*(self.publish_one(Environment.from_record(r)) for r in rows))
        return True

    async def publish_one(self, env: Environment) -> None:
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LOCK_SPACE, env.id):
                return  # another replica is on it
            # Cancelled mid-query, the connection is reset or closed by the pool, which releases the lock too.
            await self._publish_locked(conn, env)
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_SPACE, env.id)

    async def _publish_locked(self, conn: asyncpg.Connection, env: Environment) -> None:
        fresh = await store.get_environment(conn, env.id)
        if fresh is None or fresh.version <= fresh.published_version:
            return
        env = fresh
        published = dict(env.published)
        pause = PROGRESS_EVERY if env.status in ("creating", "destroying") else 0.0
        try:
            if not env.github_gone:
                view = present(await snapshot(conn, env, self.settings), self.settings)
                await self.sink.publish(env, view, published)
        except Exception as e:  # noqa: BLE001 - GitHub down or refusing: try again later, provisioning goes on
            attempts = env.publish_attempts + 1
            delay = min(300.0, 2.0 * 2 ** min(attempts, 8))
            log.warning(
                "could not publish %s#%d (attempt %d, again in %.0fs): %s",
                env.repository,
                env.pr_number,
                attempts,
                delay,
                e,
            )
            await conn.execute(
                """UPDATE environments SET published = $2, publish_attempts = $3,
                       publish_after = now() + make_interval(secs => $4) WHERE id = $1""",
                env.id,
                _json(published),
                attempts,
                delay,
            )
            return
        await conn.execute(
            """UPDATE environments SET published = $2, published_version = $3, publish_attempts = 0,
                   publish_after = now() + make_interval(secs => $4) WHERE id = $1""",
            env.id,
            _json(published),
            env.version,
            pause,
        )


def _json(value: dict) -> str:
    return json.dumps(value, default=str)


class LogSink:
    """Offline mode: what would be shown on the pull request goes to the log, once per change."""

    async def publish(self, env: Environment, view: render.Presentation, published: dict) -> None:
        label = f"{env.repository}#{env.pr_number}"
        if view.check_run is not None:
            fp = render.fingerprint([view.check_run.status, view.check_run.conclusion, view.check_run.title])
            if published.get("check_run") != fp:
                cr = view.check_run
                log.info(
                    "%s: check run %s%s: %s", label, cr.status, f"/{cr.conclusion}" if cr.conclusion else "", cr.title
                )
                published["check_run"] = fp
        fp = render.fingerprint(view.comment)
        if published.get("comment") != fp:
            log.debug("%s: comment\n%s", label, view.comment)
            published["comment"] = fp
