"""Periodic jobs: the TTL reaper, the resync of open pull requests (missed `closed` or pushes), pruning.

The resync follows one rule above all: only a pull request GitHub positively reports as closed is marked
absent. An API error, a timeout or a suspicious empty listing marks nothing (Argo CD's ApplicationSet deleted
every preview on a transient SCM error)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from gidgethub import BadRequest

from ghapp.config import Settings
from ghapp.core.contract import Desired
from ghapp.db import UNAVAILABLE, store
from ghapp.github.client import GitHubApp
from ghapp.web.events.pull_request import change_from_payload

log = logging.getLogger(__name__)

REAP_EVERY = 60.0
_RESYNC_LOCK = 0x72737963  # one replica resyncs at a time


async def reap(pool: asyncpg.Pool) -> list[int]:
    async with pool.acquire() as conn:
        expired = await store.expire(conn)
        await store.prune_deliveries(conn)
    for env_id in expired:
        log.info("environment %d expired (no push for GHAPP_ENV_TTL): destroying it", env_id)
    return expired


async def reaper(pool: asyncpg.Pool, every: float = REAP_EVERY) -> None:
    while True:
        try:
            await reap(pool)
        except UNAVAILABLE as e:
            log.warning("reaper: database unavailable (%s)", e)
        await asyncio.sleep(every)


class Resync:
    def __init__(self, pool: asyncpg.Pool, github: GitHubApp, settings: Settings):
        self.pool = pool
        self.github = github
        self.settings = settings

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except UNAVAILABLE as e:
                log.warning("resync: database unavailable (%s)", e)
            await asyncio.sleep(self.settings.resync_interval)

    async def once(self) -> dict[str, int]:
        """Resync every repository that has live environments; returns counts for the log and tests."""
        counts = {"repositories": 0, "closed": 0, "updated": 0, "errors": 0}
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RESYNC_LOCK):
                return counts
            try:
                repos = await conn.fetch(
                    """SELECT DISTINCT installation_id, repo_id, repository FROM environments
                       WHERE desired = 'present' AND installation_id IS NOT NULL AND NOT github_gone"""
                )
                for repo in repos:
                    counts["repositories"] += 1
                    try:
                        closed, updated = await self._repository(conn, dict(repo))
                        counts["closed"] += closed
                        counts["updated"] += updated
                    except Exception as e:  # noqa: BLE001 - GitHub failing: this repository waits for next time
                        counts["errors"] += 1
                        log.warning("resync of %s skipped: %s", repo["repository"], e)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _RESYNC_LOCK)
        if counts["closed"] or counts["updated"] or counts["errors"]:
            log.info("resync: %s", counts)
        return counts

    async def _repository(self, conn: asyncpg.Connection, repo: dict) -> tuple[int, int]:
        gh = await self.github.installation(repo["installation_id"], repo["repo_id"])
        path = f"/repos/{repo['repository']}"
        open_prs = {}
        async for pr in gh.getiter(f"{path}/pulls?state=open&per_page=100"):
            open_prs[pr["number"]] = pr
        live = await conn.fetch(
            """SELECT id, pr_number, desired_sha, head_sha FROM environments
               WHERE repo_id = $1 AND desired = 'present'""",
            repo["repo_id"],
        )
        closed = updated = 0
        for env in live:
            pr = open_prs.get(env["pr_number"])
            if pr is None:
                if await self._confirmed_closed(gh, path, env["pr_number"]):
                    await store.mark_closed(conn, env["id"])
                    closed += 1
            elif pr["head"]["sha"] != env["head_sha"]:  # a missed push
                payload = {
                    "pull_request": pr,
                    "repository": pr["base"]["repo"],
                    "number": pr["number"],
                    "installation": {"id": repo["installation_id"]},
                }
                change = change_from_payload(payload, Desired.PRESENT)
                await store.apply_change(conn, change, self.settings.env_ttl, gate_forks=not self.settings.allow_forks)
                updated += 1
        return closed, updated

    @staticmethod
    async def _confirmed_closed(gh, path: str, number: int) -> bool:
        """Ask about the one PR: only an answer that says `closed` counts."""
        try:
            pr = await gh.getitem(f"{path}/pulls/{number}")
        except BadRequest as e:
            if e.status_code in (404, 410):  # the PR (or its repository) is gone for good
                return True
            raise
        return pr.get("state") == "closed"
