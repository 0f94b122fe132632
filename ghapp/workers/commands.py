"""`/preview ...` commands, carried out after the webhook is answered.

A command is stored with its delivery, then a processor checks who asked (collaborator permission, cached
briefly), acknowledges with a reaction, acts through the same desired-state writes as events, and answers
politely when it may not."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import cachetools
from gidgethub import BadRequest

from ghapp.config import Settings
from ghapp.core import render
from ghapp.core.contract import Desired
from ghapp.db import UNAVAILABLE, store
from ghapp.github.client import GitHubApp
from ghapp.web.events.pull_request import change_from_payload

log = logging.getLogger(__name__)

WRITERS = ("admin", "maintain", "write")


def denial(author: str, command: str) -> str:
    return (
        f"Sorry @{author}, `/preview {command}` needs write access to this repository"
        + (
            " (or, for a pull request from this repository, being its author)."
            if command in ("redeploy", "destroy")
            else "."
        )
        + " Ask a maintainer to run it for you."
    )


def help_reply(unknown: str | None) -> str:
    intro = f"`/preview {unknown}` is not a command I know. " if unknown else ""
    return f"{intro}Preview environment commands:\n\n{render.HELP}"


def allowed(command: str, permission: str, author: str, pr_author: str, is_fork: bool) -> bool:
    """Writers may do anything; the author of a same-repository PR may redeploy or destroy it (pure)."""
    if command == "help" or permission in WRITERS:
        return True
    return command in ("redeploy", "destroy") and author.lower() == pr_author.lower() and not is_fork


class CommandProcessor:
    def __init__(self, pool: asyncpg.Pool, app: GitHubApp, settings: Settings):
        self.pool = pool
        self.app = app
        self.settings = settings
        self.wake = asyncio.Event()
        self._permissions: cachetools.TTLCache = cachetools.TTLCache(maxsize=2048, ttl=60)

    async def run(self) -> None:
        while True:
            try:
                while await self.process_one():
                    pass
            except UNAVAILABLE as e:
                log.warning("commands: database unavailable (%s)", e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval)
            self.wake.clear()

    async def process_one(self) -> bool:
        async with self.pool.acquire() as conn:
            cmd = await conn.fetchrow(
                """UPDATE commands SET attempts = attempts + 1, next_attempt_at = now() + interval '1 minute'
                   WHERE id = (SELECT id FROM commands WHERE done_at IS NULL AND next_attempt_at <= now()
                               ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                   RETURNING *"""
            )
        if cmd is None:
            return False
        try:
            outcome = await self.carry_out(dict(cmd))
        except Exception as e:  # noqa: BLE001 - GitHub (or the database) failing: retried with backoff, then given up
            if isinstance(e, BadRequest) and e.status_code == 401:
                self.app.forget(cmd["installation_id"])
            if cmd["attempts"] < 6:
                delay = min(600, 5 * 2 ** cmd["attempts"])
                log.warning("command %d failed (attempt %d), retrying in %ds: %s", cmd["id"], cmd["attempts"], delay, e)
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE commands SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1",
                        cmd["id"],
                        delay,
                    )
                return True
            outcome = f"gave up: {e}"
        async with self.pool.acquire() as conn:
            await conn.execute("UPDATE commands SET done_at = now(), outcome = $2 WHERE id = $1", cmd["id"], outcome)
        log.info(
            "/preview %s on %s#%d by %s: %s",
            cmd["command"],
            cmd["repository"],
            cmd["pr_number"],
            cmd["author"],
            outcome,
        )
        return True

    async def carry_out(self, cmd: dict) -> str:
        gh = await self.app.installation(cmd["installation_id"], cmd["repo_id"])
        repo = f"/repos/{cmd['repository']}"
        if cmd["comment_id"] and cmd["attempts"] == 1:
            await self._acknowledge(gh, repo, cmd["comment_id"])
        if cmd["command"] == "help":
            await self._reply(gh, repo, cmd, help_reply(cmd.get("unknown")))
            return "helped"
        pr = await gh.getitem(f"{repo}/pulls/{cmd['pr_number']}")
        head_repo = (pr.get("head") or {}).get("repo")
        is_fork = head_repo is None or head_repo.get("id") != pr["base"]["repo"]["id"]
        permission = await self._permission(gh, repo, cmd["author"])
        if not allowed(cmd["command"], permission, cmd["author"], pr["user"]["login"], is_fork):
            await self._reply(gh, repo, cmd, denial(cmd["author"], cmd["command"]))
            return f"denied ({permission})"
        async with self.pool.acquire() as conn, conn.transaction():
            env = await store.find_environment(conn, cmd["repository"], cmd["pr_number"])
            if cmd["command"] == "destroy":
                if env is None:
                    return "nothing to destroy"
                await store.request_destroy(conn, env.id)
                return "destroy requested"
            if pr.get("state") != "open":
                await self._reply(gh, repo, cmd, "This pull request is closed, so it gets no preview environment.")
                return "closed PR"
            if env is None:
                payload = {
                    "pull_request": pr,
                    "repository": pr["base"]["repo"],
                    "number": pr["number"],
                    "installation": {"id": cmd["installation_id"]},
                }
                change = change_from_payload(payload, Desired.PRESENT)
                await store.apply_change(conn, change, self.settings.env_ttl, gate_forks=True)
                env = await store.find_environment(conn, cmd["repository"], cmd["pr_number"])
            sha = pr["head"]["sha"] if cmd["command"] == "deploy" else (env.desired_sha or pr["head"]["sha"])
            await store.deploy_head(conn, env.id, sha, approve=is_fork, ttl_seconds=self.settings.env_ttl)
        return f"{cmd['command']} {sha[:7]}"

    @staticmethod
    async def _acknowledge(gh, repo: str, comment_id: int) -> None:
        """👀 on the comment: seen. Best effort: a comment deleted meanwhile does not stop the command."""
        try:
            await gh.post(f"{repo}/issues/comments/{comment_id}/reactions", data={"content": "eyes"})
        except BadRequest as e:
            log.info("could not react to comment %d: %s", comment_id, e)

    async def _permission(self, gh, repo: str, user: str) -> str:
        key = (repo, user.lower())
        if key not in self._permissions:
            data = await gh.getitem(f"{repo}/collaborators/{user}/permission")
            self._permissions[key] = data.get("permission", "none")
        return self._permissions[key]

    @staticmethod
    async def _reply(gh, repo: str, cmd: dict, text: str) -> None:
        await gh.post(f"{repo}/issues/{cmd['pr_number']}/comments", data={"body": text})
