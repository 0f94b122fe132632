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
from ghapp.core.commands import KEEP_OFF
from ghapp.core.contract import COMMANDS_CHANNEL, Desired, short_sha
from ghapp.core.policy import AUTHOR_COMMANDS, backoff, fork_gated, may_run
from ghapp.core.pulls import change_from_pull
from ghapp.db import commands, desired, reads, sleep
from ghapp.github.client import GitHubApp
from ghapp.workers.loops import Drain, Wake, run_loop

log = logging.getLogger(__name__)

COMMAND_LEASE = 10.0  # seconds before another processor may take over a command whose processor went away
RENEW_EVERY = COMMAND_LEASE / 3  # the lease is renewed this often while the command is carried out


def reply_marker(command_id: int) -> str:
    """Ends every reply to a command, so a retry finds a reply that was posted but not recorded."""
    return f"<!-- ghapp:command:{command_id} -->"


def denial(author: str, command: str) -> str:
    return (
        f"Sorry @{author}, `/preview {command}` needs write access to this repository"
        + (" (or, for a pull request from this repository, being its author)." if command in AUTHOR_COMMANDS else ".")
        + " Ask a maintainer to run it for you."
    )


NOTHING_TO_KEEP = (
    "This pull request has no preview environment yet, so there is nothing to keep. "
    "`/preview keep` once it is deployed."
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
        self._drain = Drain()

    async def drain(self, grace: float) -> None:
        """Shutdown: take no new command; let the one under way finish within `grace`."""
        if not await self._drain.drain(grace):
            log.warning(
                "command processor: a command is still under way after %.0fs; another replica resumes it", grace
            )

    async def process_forever(self) -> None:
        await run_loop("command processor", self._pass, poll=self.settings.poll_interval, wake=self.wake)

    async def _pass(self) -> float | None:
        while not self._drain.stopping:
            with self._drain.busy():
                if not await self.process_one():
                    break
        async with self.pool.acquire() as conn:
            return await commands.next_due(conn)  # e.g. a lease of a dead replica's command running out

    async def process_one(self) -> bool:
        async with self.pool.acquire() as conn:
            cmd = await commands.claim(conn, COMMAND_LEASE)
        if cmd is None:
            return False
        try:
            async with self._leased(cmd["id"], cmd["attempts"]):
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

    @contextlib.asynccontextmanager
    async def _leased(self, command_id: int, claim: int):
        """Renew the command's lease while the block runs: a replica that dies lets it go within COMMAND_LEASE."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(RENEW_EVERY)
                try:
                    async with self.pool.acquire() as conn:
                        if not await commands.renew(conn, command_id, claim, COMMAND_LEASE):
                            return
                except Exception as e:  # noqa: BLE001 - the next renewal may work; the lease covers a miss
                    log.warning("could not renew the lease of command %d: %s", command_id, e)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def carry_out(self, cmd: dict) -> str:
        """Act on `cmd`; each effect is recorded in its `steps` as it happens, and an effect already recorded (by an
        attempt that died or failed after it) is not repeated."""
        cmd["steps"] = commands.steps_of(cmd)
        gh = await self.app.installation(cmd["installation_id"], cmd["repo_id"])
        repo = f"/repos/{cmd['repository']}"
        if cmd["comment_id"] and "reacted" not in cmd["steps"]:
            await self._acknowledge(gh, repo, cmd["comment_id"])  # 👀 twice is one reaction: GitHub answers 200
            await self._record(cmd, reacted=True)
        if (acted := cmd["steps"].get("acted")) is not None:
            return acted  # the desired state was written by an earlier attempt
        if cmd["command"] == "help":
            await self._reply(gh, repo, cmd, help_reply(cmd.get("unknown")))
            return "helped"
        pr = await gh.getitem(f"{repo}/pulls/{cmd['pr_number']}")
        change = change_from_pull(pr, Desired.PRESENT, cmd["installation_id"])
        permission = await self._permission(gh, repo, cmd["author"])
        if not may_run(cmd["command"], permission, cmd["author"], change.author, change.is_fork):
            await self._reply(gh, repo, cmd, denial(cmd["author"], cmd["command"]))
            return f"denied ({permission})"
        if cmd["command"] in ("sleep", "wake"):
            return await self._sleep_or_wake(gh, repo, cmd)
        async with self.pool.acquire() as conn, conn.transaction():
            env = await reads.find_environment(conn, cmd["repository"], cmd["pr_number"])
            if cmd["command"] == "destroy":
                if env is None:
                    return "nothing to destroy"
                await desired.request_destroy(conn, env.id)
                return await self._acted(conn, cmd, "destroy requested")
            if pr.get("state") != "open":
                await self._reply(gh, repo, cmd, "This pull request is closed, so it gets no preview environment.")
                return "closed PR"
            if cmd["command"] in ("keep", KEEP_OFF):
                if env is None:
                    await self._reply(gh, repo, cmd, NOTHING_TO_KEEP)
                    return "nothing to keep"
                await desired.set_keep(conn, env.id, cmd["command"] == "keep", self.settings.env_ttl)
                return await self._acted(conn, cmd, "kept" if cmd["command"] == "keep" else "expires again")
            if env is None:
                await desired.apply_change(conn, change, self.settings.env_ttl, gated=True)
                env = await reads.find_environment(conn, cmd["repository"], cmd["pr_number"])
                assert env is not None  # just written in this transaction
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
            outcome = await self._acted(conn, cmd, f"{cmd['command']} {short_sha(sha)}")
        if sha != pr["head"]["sha"]:
            await self._note_newer_head(gh, repo, cmd, sha, pr["head"]["sha"], gated)
        return outcome

    async def _sleep_or_wake(self, gh, repo: str, cmd: dict) -> str:
        """`/preview sleep` or `/preview wake`: the desired sleep of the PR's preview; nothing to do is not an error."""
        async with self.pool.acquire() as conn, conn.transaction():
            env = await reads.find_environment(conn, cmd["repository"], cmd["pr_number"])
            if env is not None and cmd["command"] == "sleep":
                changed = await sleep.request_sleep(conn, env.id)
                return await self._acted(conn, cmd, "sleep requested" if changed else "already asleep or not wanted")
            if env is not None:
                woke, _env = await sleep.request_wake(conn, env.id)
                return await self._acted(conn, cmd, "wake requested" if woke else "not asleep")
        await self._reply(gh, repo, cmd, f"This pull request has no preview environment to {cmd['command']}.")
        return "no preview"

    async def _record(self, cmd: dict, **steps) -> None:
        async with self.pool.acquire() as conn:
            await commands.record_steps(conn, cmd["id"], steps)
        cmd["steps"].update(steps)

    @staticmethod
    async def _acted(conn: asyncpg.Connection, cmd: dict, outcome: str) -> str:
        """Record, in the desired-state write's own transaction, that the command took effect."""
        await commands.record_steps(conn, cmd["id"], {"acted": outcome})
        return outcome

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

    async def _reply(self, gh, repo: str, cmd: dict, text: str) -> None:
        """Answer on the pull request, once: the intent is recorded first, and an attempt that finds it unfinished
        looks for the reply by its marker before posting."""
        steps = cmd["steps"]
        if steps.get("replied"):
            return
        if steps.get("replying") and await self._find_reply(gh, repo, cmd) is not None:
            await self._record(cmd, replied=True)
            return
        await self._record(cmd, replying=True)
        await gh.post(
            f"{repo}/issues/{cmd['pr_number']}/comments", data={"body": f"{text}\n\n{reply_marker(cmd['id'])}"}
        )
        await self._record(cmd, replied=True)

    @staticmethod
    async def _find_reply(gh, repo: str, cmd: dict) -> int | None:
        marker = reply_marker(cmd["id"])
        async for comment in gh.getiter(f"{repo}/issues/{cmd['pr_number']}/comments?per_page=100"):
            body = comment.get("body") or ""
            if body.endswith(marker) and (comment.get("user") or {}).get("type") == "Bot":
                return comment["id"]
        return None
