"""Publishing a rendered presentation to a pull request: the check run on the head SHA, the one sticky comment,
and a deployment per deployed SHA. Each step records what it did in `published` and saves it at once (`save`),
so a failure or a kill half-way resumes where it stopped.

Every object GitHub keeps is created at most once: before a check run or a deployment is created, the intent is
saved (`{"sha": ..., "id": None}`); a publish that finds an intent without an id (the creating call may have
reached GitHub, its answer did not reach the database) looks the object up on the commit before creating it. The
sticky comment is looked up by its marker whenever the database knows no id. The common path costs no look-up
for check runs and deployments: only a publish interrupted mid-create pays one."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from gidgethub import BadRequest

from ghapp.core import render
from ghapp.core.contract import CHECK_RUN_NAME, COMMENT_MARKER
from ghapp.core.model import Environment
from ghapp.github.client import GitHubApp

log = logging.getLogger(__name__)

Save = Callable[[], Awaitable[None]]  # records `published` in the database as it is now


async def _no_save() -> None:
    return None


class GitHubSink:
    def __init__(self, app: GitHubApp, public_url: str):
        self.app = app
        self.public_url = public_url

    async def publish(
        self, env: Environment, view: render.Presentation, published: dict, save: Save = _no_save
    ) -> None:
        if env.installation_id is None:
            return
        try:
            await self._publish(env, view, published, save)
        except BadRequest as e:
            if e.status_code == 401:  # the token was revoked or expired early: get a new one next time
                self.app.forget(env.installation_id)
            raise

    async def _publish(self, env: Environment, view: render.Presentation, published: dict, save: Save) -> None:
        assert env.installation_id is not None  # publish() returned before otherwise
        gh = await self.app.installation(env.installation_id, env.repo_id)
        repo = f"/repos/{env.repository}"
        details = f"{self.public_url}/environments/{env.id}"
        if view.check_run is not None:
            await self._check_run(gh, repo, env, view.check_run, details, published, save)
        await self._comment(gh, repo, env, view.comment, published, save)
        if view.deployment is not None:
            await self._deployment(gh, repo, env, view.deployment, details, published, save)

    async def _check_run(
        self, gh, repo: str, env: Environment, view: render.CheckRunView, details: str, published: dict, save: Save
    ) -> None:
        old = published.get("check_run")
        fp = render.fingerprint(view.body())
        if old and old.get("id") is None:
            # A create was under way when the last publish stopped: GitHub may hold it already.
            found = await self._find_check_run(gh, repo, env, old["sha"])
            old = published["check_run"] = (
                {"sha": old["sha"], "id": found["id"], "fp": None, "done": False} if found is not None else None
            )
            await save()
        if old and old["sha"] != view.sha and not old.get("done"):
            stale = render.superseded(old["sha"], view.sha, dt.datetime.now(dt.UTC))
            await gh.patch(f"{repo}/check-runs/{old['id']}", data=stale.body())
            old["done"] = True
            await save()
        if not old or old["sha"] != view.sha:
            published["check_run"] = {"sha": view.sha, "id": None}
            await save()  # the intent, before GitHub can act on it
            created = await gh.post(
                f"{repo}/check-runs", data={**view.body(details, str(env.id)), "head_sha": view.sha}
            )
            published["check_run"] = {
                "sha": view.sha,
                "id": created["id"],
                "fp": fp,
                "done": view.status == "completed",
            }
            await save()
        elif old["fp"] != fp:
            await gh.patch(f"{repo}/check-runs/{old['id']}", data=view.body(details, str(env.id)))
            old.update(fp=fp, done=view.status == "completed")
            await save()

    async def _find_check_run(self, gh, repo: str, env: Environment, sha: str) -> dict | None:
        """This App's check run for `env` on `sha` (the newest, if several), found by name and external id."""
        query = urlencode({"check_name": CHECK_RUN_NAME, "app_id": self.app.app_id, "filter": "all", "per_page": 100})
        found = await gh.getitem(f"{repo}/commits/{sha}/check-runs?{query}")
        mine = [r for r in found.get("check_runs", []) if r.get("external_id") == str(env.id)]
        return max(mine, key=lambda r: r["id"], default=None)

    async def _comment(self, gh, repo: str, env: Environment, body: str, published: dict, save: Save) -> None:
        fp = render.fingerprint(body)
        old = published.get("comment")
        if old and old["fp"] == fp:
            return
        comment_id = old["id"] if old else await self._find_comment(gh, repo, env.pr_number)
        if comment_id is not None:
            try:
                await gh.patch(f"{repo}/issues/comments/{comment_id}", data={"body": body})
                published["comment"] = {"id": comment_id, "fp": fp}
                await save()
                return
            except BadRequest as e:
                if e.status_code != 404:
                    raise
                log.info("%s#%d: the sticky comment was deleted; writing a new one", env.repository, env.pr_number)
                published.pop("comment", None)  # should this create be lost, the next publish looks by marker
                await save()
        created = await gh.post(f"{repo}/issues/{env.pr_number}/comments", data={"body": body})
        published["comment"] = {"id": created["id"], "fp": fp}
        await save()

    async def _find_comment(self, gh, repo: str, number: int) -> int | None:
        """Our sticky comment if one exists already (the database may have lost track of it)."""
        async for comment in gh.getiter(f"{repo}/issues/{number}/comments?per_page=100"):
            body = comment.get("body") or ""
            if body.startswith(COMMENT_MARKER) and (comment.get("user") or {}).get("type") == "Bot":
                return comment["id"]
        return None

    async def _deployment(
        self,
        gh,
        repo: str,
        env: Environment,
        view: render.DeploymentView,
        details: str,
        published: dict,
        save: Save,
    ) -> None:
        old = published.get("deployment")
        if old and old.get("id") is None:
            # A create was under way when the last publish stopped: GitHub may hold it already.
            found = await self._find_deployment(gh, repo, env, old["sha"])
            old = published["deployment"] = (
                {"sha": old["sha"], "id": found["id"], "state": None} if found is not None else None
            )
            await save()
        if view.state == "inactive":
            if old and old.get("state") != "inactive":
                await self._status(gh, repo, old["id"], "inactive", None, view.description, details)
                old["state"] = "inactive"
                await save()
            return
        if not old or old["sha"] != view.sha:
            published["deployment"] = {"sha": view.sha, "id": None}
            await save()  # the intent, before GitHub can act on it
            created = await gh.post(
                f"{repo}/deployments",
                data={
                    "ref": view.sha,
                    "environment": environment_name(env),
                    "transient_environment": True,
                    "production_environment": False,
                    "required_contexts": [],
                    "auto_merge": False,
                    "description": f"Preview of #{env.pr_number}",
                    "task": "deploy",
                },
            )
            old = published["deployment"] = {"sha": view.sha, "id": created["id"], "state": None}
            await save()
        if old.get("state") != view.state or old.get("url") != view.environment_url:
            await self._status(gh, repo, old["id"], view.state, view.environment_url, view.description, details)
            old.update(state=view.state, url=view.environment_url)
            await save()

    @staticmethod
    async def _find_deployment(gh, repo: str, env: Environment, sha: str) -> dict | None:
        """The newest deployment of `env`'s environment on `sha` (the one an interrupted create made, if any)."""
        query = urlencode({"environment": environment_name(env), "sha": sha, "task": "deploy", "per_page": 100})
        found = await gh.getitem(f"{repo}/deployments?{query}")
        return max(found, key=lambda d: d["id"], default=None)

    @staticmethod
    async def _status(
        gh, repo: str, deployment_id: int, state: str, url: str | None, description: str, details: str
    ) -> None:
        body = {"state": state, "description": description[:140], "log_url": details, "auto_inactive": True}
        if url:
            body["environment_url"] = url
        await gh.post(f"{repo}/deployments/{deployment_id}/statuses", data=body)


def environment_name(env: Environment) -> str:
    """The GitHub deployment environment of a pull request's preview (the contract: `pr-<number>`)."""
    return f"pr-{env.pr_number}"
