"""Deployments, deployment statuses and commit statuses."""

from __future__ import annotations

import copy
import time

from tests.fake_github.state import (
    Ctx,
    Reply,
    Repo,
    handles,
    is_sha,
    iso,
    node_id,
)


class DeploymentsMixin:
    """Deployments and commit statuses."""

    def deployments(self, repo: str) -> list[dict]:
        full_name = self._repo(repo).full_name
        return [copy.deepcopy(d) for r, d in self._deployments.values() if r == full_name]

    def deployment_statuses(self, repo: str, deployment_id: int) -> list[dict]:
        self._deployment(self._repo(repo).full_name, deployment_id)
        return copy.deepcopy(self._deployment_statuses[deployment_id])

    def statuses(self, repo: str, sha: str) -> list[dict]:
        """Commit statuses on `sha`, oldest first."""
        return copy.deepcopy(self._statuses.get((self._repo(repo).full_name, sha), []))

    @handles("repos/create-deployment")
    def _create_deployment(self, ctx: Ctx):
        body, repo = ctx.body, ctx.repo
        sha = self._resolve(repo, body["ref"])
        if sha is None:
            raise Reply(422, f"No ref found for: {body['ref']}")
        self._check_contexts(repo, sha, body["ref"], body.get("required_contexts"))
        environment = body.get("environment", "production")
        now, deployment_id = iso(time.time()), next(self._ids)
        url = f"{self.base_url}/repos/{repo.full_name}/deployments/{deployment_id}"
        deployment = {
            "url": url,
            "id": deployment_id,
            "node_id": node_id("DE", deployment_id),
            "sha": sha,
            "ref": body["ref"],
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "original_environment": environment,
            "environment": environment,
            "description": body.get("description") or "",
            "creator": self._user_json(self.bot_login),
            "created_at": now,
            "updated_at": now,
            "statuses_url": f"{url}/statuses",
            "repository_url": f"{self.base_url}/repos/{repo.full_name}",
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get("production_environment", environment == "production"),
            "performed_via_github_app": self._app_json(),
        }
        self._deployments[deployment_id] = (repo.full_name, deployment)
        self._deployment_statuses[deployment_id] = []
        return 201, deployment, {}

    def _check_contexts(self, repo: Repo, sha: str, ref: str, required: list[str] | None) -> None:
        """GitHub refuses a deployment (409) unless the commit's status contexts (commit statuses and check runs)
        are successful: all of them by default, or only those in `required_contexts`."""
        states: dict[str, str] = {}
        for status in self._statuses.get((repo.full_name, sha), []):
            states[status["context"]] = status["state"]
        for r, run in self._check_runs.values():
            if r == repo.full_name and run["head_sha"] == sha:
                ok = run["status"] == "completed" and run["conclusion"] in ("success", "neutral", "skipped")
                states[run["name"]] = "success" if ok else (run["conclusion"] or "pending")
        contexts = states if required is None else {c: states.get(c, "missing") for c in required}
        failed = [{"context": c, "state": s} for c, s in contexts.items() if s != "success"]
        if failed:
            raise Reply(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                errors=[
                    {"contexts": failed, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}
                ],
            )

    @handles("repos/list-deployments")
    def _list_deployments(self, ctx: Ctx):
        found = [d for r, d in self._deployments.values() if r == ctx.repo.full_name]
        for key in ("sha", "ref", "task", "environment"):
            if key in ctx.query:
                found = [d for d in found if d[key] == ctx.query[key]]
        page, links = self._paginate(ctx, found[::-1])
        return 200, page, links

    @handles("repos/create-deployment-status")
    def _create_deployment_status(self, ctx: Ctx):
        deployment = self._deployment(ctx.repo.full_name, int(ctx.params["deployment_id"]))
        body = ctx.body
        self._check_length(body.get("description", ""), 140, "DeploymentStatus", "description")
        statuses = self._deployment_statuses[deployment["id"]]
        environment = body.get("environment") or (
            statuses[-1]["environment"] if statuses else deployment["environment"]
        )
        log_url = body.get("log_url") or body.get("target_url", "")
        status = self._new_deployment_status(
            deployment,
            body["state"],
            body.get("description", ""),
            environment,
            log_url,
            body.get("environment_url", ""),
        )
        if body["state"] == "success" and body.get("auto_inactive", True):
            for r, other in self._deployments.values():
                previous = self._deployment_statuses[other["id"]]
                if (
                    r == ctx.repo.full_name
                    and other is not deployment
                    and other["environment"] == environment
                    and not other["transient_environment"]
                    and not other["production_environment"]
                    and previous
                    and previous[-1]["state"] == "success"
                ):
                    self._new_deployment_status(other, "inactive", "", environment, "", "")
        return 201, status, {"Location": status["url"]}

    def _new_deployment_status(
        self, deployment: dict, state: str, description: str, environment: str, log_url: str, environment_url: str
    ) -> dict:
        status_id, now = next(self._ids), iso(time.time())
        status = {
            "url": f"{deployment['url']}/statuses/{status_id}",
            "id": status_id,
            "node_id": node_id("DES", status_id),
            "state": state,
            "creator": self._user_json(self.bot_login),
            "description": description,
            "environment": environment,
            "target_url": log_url,
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment["url"],
            "repository_url": deployment["repository_url"],
            "environment_url": environment_url,
            "log_url": log_url,
            "performed_via_github_app": self._app_json(),
        }
        self._deployment_statuses[deployment["id"]].append(status)
        deployment["updated_at"] = now
        return status

    @handles("repos/delete-deployment")
    def _delete_deployment(self, ctx: Ctx):
        deployment = self._deployment(ctx.repo.full_name, int(ctx.params["deployment_id"]))
        statuses = self._deployment_statuses[deployment["id"]]
        # GitHub: "If the repository only has one deployment, you can delete the deployment regardless of its
        # status. If the repository has more than one deployment, you can only delete inactive deployments."
        alone = sum(1 for r, _ in self._deployments.values() if r == ctx.repo.full_name) == 1
        if not alone and (not statuses or statuses[-1]["state"] != "inactive"):
            raise Reply(
                422, "We cannot delete an active deployment unless it is the only deployment in a given environment."
            )
        del self._deployments[deployment["id"]]
        del self._deployment_statuses[deployment["id"]]
        return 204, None, {}

    def _deployment(self, repo: str, deployment_id: int) -> dict:
        entry = self._deployments.get(deployment_id)
        if entry is None or entry[0] != repo:
            raise Reply(404, "Not Found")
        return entry[1]

    @handles("repos/create-commit-status")
    def _create_status(self, ctx: Ctx):
        sha, body = ctx.params["sha"], ctx.body
        if not is_sha(sha):
            raise Reply(422, f"No commit found for SHA: {sha}", violation=True)
        status_id, now = next(self._ids), iso(time.time())
        bot = self._user_json(self.bot_login)
        status = {
            "url": f"{self.base_url}/repos/{ctx.repo.full_name}/statuses/{sha}",
            "avatar_url": bot["avatar_url"],
            "id": status_id,
            "node_id": node_id("SC", status_id),
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": now,
            "updated_at": now,
            "creator": bot,
        }
        self._statuses.setdefault((ctx.repo.full_name, sha), []).append(status)
        return 201, status, {"Location": status["url"]}

    @handles("repos/get-combined-status-for-ref")
    def _get_combined_status(self, ctx: Ctx):
        sha = self._resolve(ctx.repo, ctx.params["ref"])
        if sha is None:
            raise Reply(404, "No commit found for SHA: " + ctx.params["ref"])
        latest: dict[str, dict] = {}
        for status in self._statuses.get((ctx.repo.full_name, sha), []):
            latest[status["context"].lower()] = status
        states = {s["state"] for s in latest.values()}
        state = (
            "failure"
            if states & {"error", "failure"}
            else "pending"
            if not states or "pending" in states
            else "success"
        )
        page, links = self._paginate(ctx, list(latest.values()))
        statuses = [{k: v for k, v in s.items() if k != "creator"} | {"required": False} for s in page]
        repo_url = f"{self.base_url}/repos/{ctx.repo.full_name}"
        return (
            200,
            {
                "state": state,
                "statuses": statuses,
                "sha": sha,
                "total_count": len(latest),
                "repository": self._repo_json(ctx.repo),
                "commit_url": f"{repo_url}/commits/{sha}",
                "url": f"{repo_url}/commits/{sha}/status",
            },
            links,
        )

    def add_status(
        self, repo: str, sha: str, context: str, state: str = "success", *, creator: str = "ci-bot", description=None
    ) -> dict:
        """A commit status set by someone else (CI), e.g. `wait_for: [build-image]`; returns it."""
        assert state in ("error", "failure", "pending", "success"), f"bad state {state!r}"
        assert is_sha(sha), f"not a 40-hex SHA: {sha!r}"
        full_name = self._repo(repo).full_name
        status_id, now = next(self._ids), iso(time.time())
        user = self._user_json(creator)
        status = {
            "url": f"{self.base_url}/repos/{full_name}/statuses/{sha}",
            "avatar_url": user["avatar_url"],
            "id": status_id,
            "node_id": node_id("SC", status_id),
            "state": state,
            "description": description,
            "target_url": None,
            "context": context,
            "created_at": now,
            "updated_at": now,
            "creator": user,
        }
        self._statuses.setdefault((full_name, sha), []).append(status)
        return copy.deepcopy(status)
