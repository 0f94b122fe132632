"""The publisher: makes what the pull request shows match each environment's state.

Level-triggered like the reconciler: every change of an environment gets a new `version` (a trigger does it);
the publisher renders the environment, tells GitHub what differs from what it last published (kept in
`published`), and records the version it published. GitHub being down delays this and nothing else: the next
attempt publishes the state of that moment. Offline, the same text goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg

from ghapp.config import Settings
from ghapp.core import render
from ghapp.core.contract import NOTIFY_CHANNEL, Status
from ghapp.core.gateway import served_url
from ghapp.core.model import Environment
from ghapp.core.policy import awaiting_approval, backoff, may_start_preview, preview_cap
from ghapp.core.rules import awaiting_request
from ghapp.db import locks, publishing
from ghapp.workers.loops import Drain, Wake, run_loop

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0  # seconds between two updates of a running environment (rate limits)
BATCH = 20
WAKE_COALESCE = 0.1


class Sink(Protocol):
    async def publish(
        self, env: Environment, view: render.Presentation, published: dict, save: Callable[[], Awaitable[None]]
    ) -> None:
        """Bring the pull request in line with `view`; record what was done in `published` as it goes, and
        `save()` it as soon as GitHub answers (a kill right after must not lose what GitHub now holds)."""


async def snapshot(conn: asyncpg.Connection, env: Environment, settings: Settings) -> render.Snapshot:
    run = await publishing.latest_run(conn, env.id)
    tail = ""
    if run is not None and env.status == Status.FAILED:
        tail = await publishing.failure_tail(conn, run["id"], render.LOG_LINES)
    return render.Snapshot(
        waiting=await _waiting(conn, env, settings),
        repository=env.repository,
        pr_number=env.pr_number,
        status=env.status,
        desired=env.desired,
        head_sha=env.head_sha or env.desired_sha or "",
        desired_sha=env.desired_sha,
        deployed_sha=env.deployed_sha,
        preview_url=env.preview_url,
        gateway_url=served_url(env.name, env.preview_url, settings.preview_site),
        outputs=env.outputs,
        progress=env.progress,
        awaiting_approval=awaiting_approval(env, settings.allow_forks),
        attempts=env.attempts,
        retrying_at=env.next_attempt_at if env.status == Status.FAILED else None,
        last_error=env.last_error,
        updated_at=env.updated_at,
        expires_at=env.expires_at,
        run_action=run["action"] if run else None,
        run_started_at=run["started_at"] if run else None,
        run_finished_at=run["finished_at"] if run else None,
        log_tail=tail,
        details_url=f"{settings.base_url}/environments/{env.id}",
        expired=env.expired_at is not None,
        ttl=env.ttl,
        kept=env.keep,
        reminded_at=env.expiry_warned_at,
        sleeping=env.desired_sleeping,
        hold=env.hold,
        hold_reason=env.hold_reason,
        config_source=env.config_source,
        deploy_button=awaiting_request(env),
    )


async def _waiting(conn: asyncpg.Connection, env: Environment, settings: Settings) -> render.Waiting | None:
    """Its place in line, if this new preview waits for its repository's cap on live previews."""
    cap = preview_cap(settings.max_previews, env.max_previews)
    if cap is None or env.status != Status.PENDING or env.provisioned:
        return None
    place = await publishing.queue_place(conn, env.id)
    if place is None or may_start_preview(*place, cap):
        return None
    live, position = place
    return render.Waiting(live, cap, position - max(0, cap - live))  # its place among those held back


def present(snap: render.Snapshot, settings: Settings) -> render.Presentation:
    return render.Presentation(render.check_run(snap), render.comment(snap, settings.env_ttl), render.deployment(snap))


class Publisher:
    def __init__(self, pool: asyncpg.Pool, database_url: str, sink: Sink, settings: Settings):
        self.pool = pool
        self.database_url = database_url
        self.sink = sink
        self.settings = settings
        self._wake = Wake(database_url, NOTIFY_CHANNEL)
        self._drain = Drain()

    async def drain(self, grace: float) -> None:
        """Shutdown: publish nothing new; let the publishes under way finish within `grace`."""
        if not await self._drain.drain(grace):
            log.warning("publisher: publishes still under way after %.0fs; they resume on another replica", grace)

    async def publish_forever(self) -> None:
        poll = min(1.0, self.settings.poll_interval)
        await run_loop("publisher", self._publish_pass, poll=poll, wake=self._wake, coalesce=WAKE_COALESCE)

    async def _publish_pass(self) -> float | None:
        if self._drain.stopping:
            return None
        with self._drain.busy():
            # At once again only if the batch was full; what changed during this pass sent a NOTIFY, which wakes
            # the loop after WAKE_COALESCE (under a stream of pushes a pass does not follow a pass back to back).
            return 0 if await self.publish_due() >= BATCH else None

    async def publish_due(self) -> int:
        """Publish every environment whose state changed, at most BATCH; how many were due."""
        async with self.pool.acquire() as conn:
            due = await publishing.due(conn, BATCH)
        await asyncio.gather(*(self.publish_one(env) for env in due))
        return len(due)

    async def publish_one(self, env: Environment) -> None:
        async with self.pool.acquire() as conn:
            if not await locks.try_lock(conn, locks.PUBLISH, env.id):
                return  # another replica is on it
            # Cancelled mid-query, the connection is reset or closed by the pool, which releases the lock too.
            await self._publish_locked(conn, env)
            await locks.unlock(conn, locks.PUBLISH, env.id)

    async def _publish_locked(self, conn: asyncpg.Connection, env: Environment) -> None:
        fresh = await publishing.unpublished(conn, env.id)
        if fresh is None:
            return
        env = fresh
        published = dict(env.published)

        async def save() -> None:
            await publishing.save(conn, env.id, published)

        pause = PROGRESS_EVERY if env.status in (Status.CREATING, Status.DESTROYING) else 0.0
        try:
            if not env.github_gone:
                view = present(await snapshot(conn, env, self.settings), self.settings)
                await self.sink.publish(env, view, published, save)
        except Exception as e:  # noqa: BLE001 - GitHub down or refusing: try again later, provisioning goes on
            attempts = env.publish_attempts + 1
            delay = backoff(attempts + 1, 2.0, 300.0)
            log.warning(
                "could not publish %s (attempt %d, again in %.0fs): %s",
                env.label,
                attempts,
                delay,
                e,
            )
            await publishing.failed(conn, env.id, published, attempts, delay)
            return
        await publishing.published(conn, env.id, published, env.version, pause)


class LogSink:
    """Offline mode: what would be shown on the pull request goes to the log, once per change."""

    async def publish(
        self, env: Environment, view: render.Presentation, published: dict, save: Callable[[], Awaitable[None]]
    ) -> None:
        label = env.label
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
