"""Publishing a rendered presentation to a pull request: the check run on the head SHA, the one sticky comment,
and a deployment per deployed SHA. Each step records what it did in `published`, so a failure half-way
resumes where it stopped."""

from __future__ import annotations

import datetime as dt
import logging

from gidgethub import BadRequest

from ghapp.core import render
from ghapp.core.contract import COMMENT_MARKER
from ghapp.core.model import Environment
from ghapp.github.client import GitHubApp

log = logging.getLogger(__name__)


class GitHubSink:
    def __init__(self, app: GitHubApp, public_url: str):
        self.app = app
        self.public_url = public_url

    async def publish(self, env: Environment, view: render.Presentation, published: dict) -> None:
        if env.installation_id is None:
            return
        try:
            await self._publish(env, view, published)
        except BadRequest as e:
            if e.status_code == 401:  # the token was revoked or expired early: get a new one next time
                self.app.forget(env.installation_id)
            raise

    async def _publish(self, env: Environment, view: render.Presentation, published: dict) -> None:
        assert env.installation_id is not None  # publish() returned before otherwise
        gh = await self.app.installation(env.installation_id, env.repo_id)
        repo = f"/repos/{env.repository}"
        details = f"{self.public_url}/environments/{env.id}"
        if view.check_run is not None:
            await self._check_run(gh, repo, env, view.check_run, details, published)
        await self._comment(gh, repo, env, view.comment, published)
        if view.deployment is not None:
            await self._deployment(gh, repo, env, view.deployment, details, published)

    async def _check_run(
        self, gh, repo: str, env: Environment, view: render.CheckRunView, details: str, published: dict
    ) -> None:
        old = published.get("check_run")
        fp = render.fingerprint(view.body())
        if old and old["sha"] != view.sha and not old.get("done"):
            stale = render.superseded(old["sha"], view.sha, dt.datetime.now(dt.UTC))
            await gh.patch(f"{repo}/check-runs/{old['id']}", data=stale.body())
            old["done"] = True
        if not old or old["sha"] != view.sha:
            created = await gh.post(
                f"{repo}/check-runs", data={**view.body(details, str(env.id)), "head_sha": view.sha}
            )
            published["check_run"] = {
                "sha": view.sha,
                "id": created["id"],
                "fp": fp,
                "done": view.status == "completed",
            }
        elif old["fp"] != fp:
            await gh.patch(f"{repo}/check-runs/{old['id']}", data=view.body(details, str(env.id)))
            old.update(fp=fp, done=view.status == "completed")

    async def _comment(self, gh, repo: str, env: Environment, body: str, published: dict) -> None:
        fp = render.fingerprint(body)
        old = published.get("comment")
        if old and old["fp"] == fp:
            return
        comment_id = old["id"] if old else await self._find_comment(gh, repo, env.pr_number)
        if comment_id is not None:
            try:
                await gh.patch(f"{repo}/issues/comments/{comment_id}", data={"body": body})
                published["comment"] = {"id": comment_id, "fp": fp}
                return
            except BadRequest as e:
                if e.status_code != 404:
                    raise
                log.info("%s#%d: the sticky comment was deleted; writing a new one", env.repository, env.pr_number)
        created = await gh.post(f"{repo}/issues/{env.pr_number}/comments", data={"body": body})
        published["comment"] = {"id": created["id"], "fp": fp}

    async def _find_comment(self, gh, repo: str, number: int) -> int | None:
        """Our sticky comment if one exists already (the database may have lost track of it)."""
        async for comment in gh.getiter(f"{repo}/issues/{number}/comments?per_page=100"):
            body = comment.get("body") or ""
            if body.startswith(COMMENT_MARKER) and (comment.get("user") or {}).get("type") == "Bot":
                return comment["id"]
        return None

    async def _deployment(
        self, gh, repo: str, env: Environment, view: render.DeploymentView, details: str, published: dict
    ) -> None:
        old = published.get("deployment")
        if view.state == "inactive":
            if old and old.get("state") != "inactive":
                await self._status(gh, repo, old["id"], "inactive", None, view.description, details)
                old["state"] = "inactive"
            return
        if not old or old["sha"] != view.sha:
            created = await gh.post(
                f"{repo}/deployments",
                data={
                    "ref": view.sha,
                    "environment": f"pr-{env.pr_number}",
                    "transient_environment": True,
                    "production_environment": False,
                    "required_contexts": [],
                    "auto_merge": False,
                    "description": f"Preview of #{env.pr_number}",
                    "task": "deploy",
                },
            )
            old = published["deployment"] = {"sha": view.sha, "id": created["id"], "state": None}
        if old.get("state") != view.state or old.get("url") != view.environment_url:
            await self._status(gh, repo, old["id"], view.state, view.environment_url, view.description, details)
            old.update(state=view.state, url=view.environment_url)

    @staticmethod
    async def _status(
        gh, repo: str, deployment_id: int, state: str, url: str | None, description: str, details: str
    ) -> None:
        body = {"state": state, "description": description[:140], "log_url": details, "auto_inactive": True}
        if url:
            body["environment_url"] = url
        await gh.post(f"{repo}/deployments/{deployment_id}/statuses", data=body)
