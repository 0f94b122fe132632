"""`/preview ...` commands, carried out after the webhook is answered.

A command is stored with its delivery, then a processor checks who asked (collaborator permission, cached
briefly), acknowledges with a reaction, acts through the same desired-state writes as events, and answers
politely when it may not."""

from __future__ import annotations

import logging

import asyncpg
import cachetools
from gidgethub import BadRequest

from ghapp.config import Settings
from ghapp.core import render
from ghapp.core.contract import COMMANDS_CHANNEL, Desired, short_sha
from ghapp.core.policy import AUTHOR_COMMANDS, backoff, may_run
from ghapp.core.pulls import change_from_pull
from ghapp.db import commands, desired, reads
from ghapp.github.client import GitHubApp
from ghapp.workers.loops import Wake, run_loop

log = logging.getLogger(__name__)

COMMAND_LEASE = 60.0  # seconds before another processor may take over a command whose processor went away


def denial(author: str, command: str) -> str:
    return (
        f"Sorry @{author}, `/preview {command}` needs write access to this repository"
        + (" (or, for a pull request from this repository, being its author)." if command in AUTHOR_COMMANDS else ".")
        + " Ask a maintainer to run it for you."
    )


def help_reply(unknown: str | None) -> str:
    intro = f"`/preview {unknown}` is not a command I know. " if unknown else ""
    return f"{intro}Preview environment commands:\n\n{render.HELP}"


class CommandProcessor:
    def __init__(self, pool: asyncpg.Pool, database_url: str, app: GitHubApp, settings: Settings):
        self.pool = pool
        self.app = app
        self.settings = settings
        self.wake = Wake(database_url, COMMANDS_CHANNEL)
        self._permissions: cachetools.TTLCache = cachetools.TTLCache(maxsize=2048, ttl=60)

    async def run(self) -> None:
        await run_loop("command processor", self._pass, poll=self.settings.poll_interval, wake=self.wake)

    async def _pass(self) -> float | None:
        while await self.process_one():
            pass
        return None

    async def process_one(self) -> bool:
        async with self.pool.acquire() as conn:
            cmd = await commands.claim(conn, COMMAND_LEASE)
        if cmd is None:
            return False
        try:
            outcome = await self.carry_out(dict(cmd))
        except Exception as e:  # noqa: BLE001 - GitHub (or the database) failing: retried with backoff, then given up
            if isinstance(e, BadRequest) and e.status_code == 401:
                self.app.forget(cmd["installation_id"])
            if cmd["attempts"] < 6:
                delay = backoff(cmd["attempts"] + 1, 5.0, 600.0)
                log.warning("command %d failed (attempt %d), retrying in %ds: %s", cmd["id"], cmd["attempts"], delay, e)
                async with self.pool.acquire() as conn:
                    await commands.retry_in(conn, cmd["id"], delay)
                return True
            outcome = f"gave up: {e}"
        async with self.pool.acquire() as conn:
            await commands.done(conn, cmd["id"], outcome)
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
        change = change_from_pull(pr, Desired.PRESENT, cmd["installation_id"])
        permission = await self._permission(gh, repo, cmd["author"])
        if not may_run(cmd["command"], permission, cmd["author"], change.author, change.is_fork):
            await self._reply(gh, repo, cmd, denial(cmd["author"], cmd["command"]))
            return f"denied ({permission})"
        async with self.pool.acquire() as conn, conn.transaction():
            env = await reads.find_environment(conn, cmd["repository"], cmd["pr_number"])
            if cmd["command"] == "destroy":
                if env is None:
                    return "nothing to destroy"
                await desired.request_destroy(conn, env.id)
                return "destroy requested"
            if pr.get("state") != "open":
                await self._reply(gh, repo, cmd, "This pull request is closed, so it gets no preview environment.")
                return "closed PR"
            if env is None:
                await desired.apply_change(conn, change, self.settings.env_ttl, gated=True)
                env = await reads.find_environment(conn, cmd["repository"], cmd["pr_number"])
                assert env is not None  # just written in this transaction
            sha = pr["head"]["sha"] if cmd["command"] == "deploy" else (env.desired_sha or pr["head"]["sha"])
            await desired.deploy_head(conn, env.id, sha, approve=change.is_fork, ttl_seconds=self.settings.env_ttl)
        return f"{cmd['command']} {short_sha(sha)}"

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
