"""Periodic jobs: the TTL reaper and its reminder, the idle sleeper, the resync of open pull requests (missed
`closed` or pushes), pruning.

The resync follows one rule above all: only a pull request GitHub positively reports as closed is marked
absent. An API error, a timeout or a suspicious empty listing marks nothing (Argo CD's ApplicationSet deleted
every preview on a transient SCM error).

It is optional work, so it spends GitHub's budget sparingly: its GETs are conditional (an unchanged listing is a
304, which GitHub does not count), a pass takes at most GHAPP_RESYNC_BATCH repositories (the next pass continues
after the last one), and an installation whose remaining requests are at or below GHAPP_RATE_RESERVE is left for a
later pass, so what people wait for (check runs, comments) never runs out."""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg
from gidgethub import BadRequest

from ghapp.config import Settings
from ghapp.core.contract import Desired
from ghapp.core.policy import fork_gated, may_spend_optional, next_slice
from ghapp.core.pulls import change_from_pull
from ghapp.db import desired, locks, reads, retention, sleep
from ghapp.github.client import GitHubApp
from ghapp.sources import Sources
from ghapp.workers.loops import run_loop

log = logging.getLogger(__name__)


async def expire_and_prune(
    pool: asyncpg.Pool, settings: Settings, remaining: Callable[[int], int | None] | None = None
) -> float | None:
    """Destroy what outlived its TTL, remind the pull requests of what expires soon, and delete what is older than
    GHAPP_RETENTION (in batches). `remaining`: an installation's GitHub budget (None: offline, no budget)."""
    async with pool.acquire() as conn:
        expired = await desired.expire(conn)
        reminded = await remind_expiring(conn, settings, remaining)
    for env_id in expired:
        log.info("environment %d expired (no activity for its ttl): destroying it", env_id)
    if reminded:
        log.info("expiry reminder (GHAPP_EXPIRY_WARNING) due for environments %s", reminded)
    deleted = await retention.prune(pool, settings.retention)
    if any(deleted.values()):
        log.info("retention (GHAPP_RETENTION): deleted %s", deleted)
    return None


async def remind_expiring(
    conn: asyncpg.Connection, settings: Settings, remaining: Callable[[int], int | None] | None = None
) -> list[int]:
    """Mark the environments that expire within GHAPP_EXPIRY_WARNING as reminded; the publisher then updates the
    sticky comment once ("expires in 2 h; `/preview keep` to keep it"). It is optional GitHub work: an installation
    whose budget is at or below GHAPP_RATE_RESERVE is reminded on a later pass, if it still can be."""
    if settings.expiry_warning <= 0:
        return []
    async with conn.transaction():
        due = await desired.remind_expiry(conn, settings.expiry_warning)
        chosen = [
            r["id"]
            for r in due
            if remaining is None
            or r["installation_id"] is None
            or may_spend_optional(remaining(r["installation_id"]), settings.rate_reserve)
        ]
        await desired.mark_reminded(conn, chosen)
    return chosen


async def prune_sources(pool: asyncpg.Pool, sources: Sources, grace: float = 3600.0) -> float | None:
    """Delete this replica's checkouts of commits that no environment wants or runs any more (and that were not
    handed to a run for `grace` seconds)."""
    async with pool.acquire() as conn:
        in_use = await retention.commits_in_use(conn)
    for tree in await sources.prune(in_use, grace):
        log.info("deleted the checkout %s: no environment uses that commit any more", tree)
    return None


async def sleep_idle(pool: asyncpg.Pool, settings: Settings) -> float | None:
    """Put every preview that had no request for its `sleep_after` (else GHAPP_SLEEP_AFTER) to sleep, in one
    statement whatever the number of previews."""
    async with pool.acquire() as conn:
        asleep = await sleep.sleep_idle(conn, settings.sleep_after)
    for env_id in asleep:
        log.info("environment %d had no request for its sleep_after: putting it to sleep", env_id)
    return None


def sleep_check_interval(settings: Settings) -> float:
    """How often the sleeper looks: a twentieth of GHAPP_SLEEP_AFTER, between 1 s and a minute."""
    return min(60.0, max(1.0, (settings.sleep_after or 3600.0) / 20))


class Resync:
    def __init__(self, pool: asyncpg.Pool, github: GitHubApp, settings: Settings):
        self.pool = pool
        self.github = github
        self.settings = settings
        self._after: int | None = None  # the last repository id of the previous pass

    async def resync_forever(self) -> None:
        await run_loop("resync", self._pass, poll=self.settings.resync_interval)

    async def _pass(self) -> float | None:
        await self.once()
        return None

    async def once(self) -> dict[str, int]:
        """Resync the next repositories that have live environments, within the budget; returns counts for the
        log and tests (`throttled`: repositories left for later because their installation's budget is low)."""
        counts = {"repositories": 0, "closed": 0, "updated": 0, "errors": 0, "throttled": 0}
        async with self.pool.acquire() as conn:
            if not await locks.try_lock(conn, locks.RESYNC):
                return counts
            try:
                live = {r["repo_id"]: dict(r) for r in await reads.live_repositories(conn)}
                chosen, self._after = next_slice(sorted(live), self._after, self.settings.resync_batch)
                for repo in (live[repo_id] for repo_id in chosen):
                    remaining = self.github.budget.remaining(repo["installation_id"])
                    if not may_spend_optional(remaining, self.settings.rate_reserve):
                        counts["throttled"] += 1
                        continue
                    counts["repositories"] += 1
                    try:
                        closed, updated = await self._repository(conn, dict(repo))
                        counts["closed"] += closed
                        counts["updated"] += updated
                    except Exception as e:  # noqa: BLE001 - GitHub failing: this repository waits for next time
                        counts["errors"] += 1
                        log.warning("resync of %s skipped: %s", repo["repository"], e)
            finally:
                await locks.unlock(conn, locks.RESYNC)
        if counts["closed"] or counts["updated"] or counts["errors"] or counts["throttled"]:
            log.info("resync: %s", counts)
        return counts

    async def _repository(self, conn: asyncpg.Connection, repo: dict) -> tuple[int, int]:
        gh = await self.github.installation(repo["installation_id"], repo["repo_id"])
        path = f"/repos/{repo['repository']}"
        open_prs = {}
        async for pr in gh.getiter(f"{path}/pulls?state=open&per_page=100"):
            open_prs[pr["number"]] = pr
        live = await reads.live_environments(conn, repo["repo_id"])
        closed = updated = 0
        for env in live:
            pr = open_prs.get(env["pr_number"])
            if pr is None:
                if await self._confirmed_closed(gh, path, env["pr_number"]):
                    await desired.mark_closed(conn, env["id"])
                    closed += 1
            else:
                change = change_from_pull(pr, Desired.PRESENT, repo["installation_id"])
                pushed = change.head_sha != env["head_sha"]  # a missed push; else missed labels, draft or base?
                if not pushed and (change.base_ref, change.draft, list(change.labels)) == (
                    env["base_ref"],
                    env["draft"],
                    env["labels"],
                ):
                    continue
                gated = fork_gated(change.is_fork, self.settings.allow_forks)
                try:
                    await desired.apply_change(conn, change, self.settings.env_ttl, gated=gated, facts_only=not pushed)
                except desired.Outdated:  # an event newer than this listing arrived meanwhile
                    continue
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
