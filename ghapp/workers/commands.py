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
from ghapp.core.policy import AUTHOR_COMMANDS, backoff, fork_gated, may_run
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
            gated = fork_gated(change.is_fork, self.settings.allow_forks)
            sha, refusal = await self._commit(gh, repo, cmd, env, pr, gated)
            if sha is None:
                await self._reply(gh, repo, cmd, refusal)
                return f"refused: {refusal}"
            await desired.deploy_head(
                conn,
                env.id,
                sha,
                approve=change.is_fork,
                ttl_seconds=self.settings.env_ttl,
                pr_head=pr["head"]["sha"],
            )
        if sha != pr["head"]["sha"]:
            await self._note_newer_head(gh, repo, cmd, sha, pr["head"]["sha"], gated)
        return f"{cmd['command']} {short_sha(sha)}"

    async def _commit(self, gh, repo: str, cmd: dict, env, pr: dict, gated: bool) -> tuple[str | None, str]:
        """The commit this command deploys (None, with the polite reason, if there is none it may deploy): the
        commit named, else for a fork's approval the one bound when the command arrived, never the head now."""
        head = pr["head"]["sha"]
        if cmd["command"] == "deploy" and cmd.get("unknown"):
            return None, (
                f"`{cmd['unknown']}` is not a commit SHA. `/preview deploy <sha>` takes 7 to 40 hexadecimal "
                "characters naming a commit of this pull request."
            )
        if cmd.get("sha_named"):
            return await self._resolve(gh, repo, cmd["pr_number"], cmd["sha"], head)
        if cmd["command"] == "redeploy" and env.desired_sha and not (gated and cmd["source"] == "check_run"):
            return env.desired_sha, ""  # what is deployed (already approved), again
        if not gated:
            return head, ""
        if cmd.get("sha"):
            return cmd["sha"], ""
        return None, (
            "I cannot tell which commit you reviewed: this pull request was pushed to after your comment (or "
            "before I knew of it). Approve a commit by naming it: `/preview deploy <sha>`."
        )

    @staticmethod
    async def _resolve(gh, repo: str, number: int, named: str, head: str) -> tuple[str | None, str]:
        """A named (possibly abbreviated) SHA → the one commit of this pull request it names."""
        if named == head or (len(named) < 40 and head.startswith(named)):
            return head, ""
        matches = set()
        async for commit in gh.getiter(f"{repo}/pulls/{number}/commits?per_page=100"):  # GitHub lists up to 250
            if isinstance(commit, dict) and str(commit.get("sha", "")).startswith(named):
                matches.add(commit["sha"])
        if len(matches) == 1:
            return matches.pop(), ""
        if matches:
            return None, f"`{named}` names several commits of this pull request; give more of the SHA."
        return None, f"`{named}` is not a commit of this pull request, so I will not deploy it."

    async def _note_newer_head(self, gh, repo: str, cmd: dict, sha: str, head: str, gated: bool) -> None:
        """Say that the head moved past the deployed commit. Best effort: the deploy is already recorded, and a
        retry of the whole command for a failed reply would deploy twice."""
        text = f"Deploying `{short_sha(sha)}`. The pull request's head is now `{short_sha(head)}`" + (
            ", which needs its own approval: `/preview deploy` once you have reviewed it."
            if gated
            else "; it is deployed when pushed, or with `/preview deploy`."
        )
        try:
            await self._reply(gh, repo, cmd, text)
        except BadRequest as e:
            log.info("could not say that %s#%d moved on: %s", cmd["repository"], cmd["pr_number"], e)

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
