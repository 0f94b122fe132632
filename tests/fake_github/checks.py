"""Check runs and check suites."""

from __future__ import annotations

import copy
import hashlib
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


class ChecksMixin:
    """Check runs (the App's and other apps') and the suites that hold them."""

    def add_check_run(
        self,
        repo: str,
        head_sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        app: str = "ci-app",
    ) -> dict:
        """A check run made by another App (`app` is its slug), e.g. CI's `build-image`; returns its record."""
        assert status == "completed" or conclusion is None, "only a completed check run has a conclusion"
        now = iso(time.time())
        record = {
            "id": next(self._ids),
            "name": name,
            "head_sha": head_sha,
            "status": status,
            "conclusion": conclusion,
            "details_url": None,
            "external_id": None,
            "output": {"title": None, "summary": None, "text": None, "annotations": [], "images": []},
            "actions": [],
            "started_at": now,
            "completed_at": now if status == "completed" else None,
        }
        self._check_runs[record["id"]] = (self._repo(repo).full_name, record)
        self._foreign_runs[record["id"]] = app
        return copy.deepcopy(record)

    def check_runs(self, repo: str) -> list[dict]:
        """Every check run in the repository, in creation order, with every field the app set."""
        full_name = self._repo(repo).full_name
        return [copy.deepcopy(record) for r, record in self._check_runs.values() if r == full_name]

    @handles("checks/create")
    def _create_check_run(self, ctx: Ctx):
        body = ctx.body
        if not is_sha(body["head_sha"]):
            raise Reply(422, f"No commit found for SHA: {body['head_sha']}", violation=True)
        record = {
            "id": next(self._ids),
            "name": body["name"],
            "head_sha": body["head_sha"],
            "status": "queued",
            "conclusion": None,
            "details_url": None,
            "external_id": None,
            "output": {"title": None, "summary": None, "text": None, "annotations": [], "images": []},
            "actions": [],
            "started_at": iso(time.time()),
            "completed_at": None,
        }
        self._apply_check_run(record, body)
        self._check_runs[record["id"]] = (ctx.repo.full_name, record)
        return 201, self._check_run_json(ctx.repo, record), {}

    @handles("checks/update")
    def _update_check_run(self, ctx: Ctx):
        entry = self._check_runs.get(int(ctx.params["check_run_id"]))
        if entry is None or entry[0] != ctx.repo.full_name:
            raise Reply(404, "Not Found")
        self._apply_check_run(entry[1], ctx.body)
        return 200, self._check_run_json(ctx.repo, entry[1]), {}

    def _apply_check_run(self, record: dict, body: dict) -> None:
        conclusion = body.get("conclusion", record["conclusion"])
        completing = "conclusion" in body or "completed_at" in body or body.get("status") == "completed"
        if completing and conclusion is None:
            raise Reply(
                422,
                'Invalid request.\n\n"conclusion" is required when "status" is "completed" or "completed_at" is given.',
                violation=True,
            )
        for key in ("name", "details_url", "external_id", "status", "started_at", "completed_at", "conclusion"):
            if key in body:
                record[key] = body[key]
        if "actions" in body:
            record["actions"] = body["actions"]
        if "output" in body:
            output = body["output"]
            record["output"].update({k: output.get(k) for k in ("title", "summary", "text")})
            record["output"]["annotations"] += output.get("annotations", [])
            record["output"]["images"] = output.get("images", record["output"]["images"])
        if record["conclusion"] is not None:
            record["status"] = "completed"
        if record["status"] == "completed":
            record["completed_at"] = record["completed_at"] or iso(time.time())

    @handles("checks/list-for-ref")
    def _list_check_runs(self, ctx: Ctx):
        sha = self._resolve(ctx.repo, ctx.params["ref"])
        if sha is None:
            raise Reply(422, f"No commit found for SHA: {ctx.params['ref']}")
        runs = [r for repo, r in self._check_runs.values() if repo == ctx.repo.full_name and r["head_sha"] == sha]
        query = ctx.query
        if "check_name" in query:
            runs = [r for r in runs if r["name"] == query["check_name"]]
        if "status" in query:
            runs = [r for r in runs if r["status"] == query["status"]]
        if "app_id" in query:
            runs = [r for r in runs if self._run_app_id(r) == int(query["app_id"])]
        if query.get("filter", "latest") == "latest":
            latest = {r["name"]: r for r in runs}
            runs = list(latest.values())
        runs.sort(key=lambda r: -r["id"])
        page, links = self._paginate(ctx, runs)
        return 200, {"total_count": len(runs), "check_runs": [self._check_run_json(ctx.repo, r) for r in page]}, links

    def _check_run_json(self, repo: Repo, record: dict) -> dict:
        api = f"{self.base_url}/repos/{repo.full_name}"
        suite = self._suite_id(repo, record)
        output = record["output"]
        pulls = [
            p
            for p in self.pulls.values()  # GitHub lists only same-repository pull requests here
            if p.repo == repo.full_name and p.head_sha == record["head_sha"] and not p.fork and p.state == "open"
        ]
        mini_repo = {"id": repo.id, "url": api, "name": repo.name}
        return {
            "id": record["id"],
            "head_sha": record["head_sha"],
            "node_id": node_id("CR", record["id"]),
            "external_id": record["external_id"] or "",
            "url": f"{api}/check-runs/{record['id']}",
            "html_url": f"https://github.com/{repo.full_name}/runs/{record['id']}",
            "details_url": record["details_url"] or self._app_json()["external_url"],
            "status": record["status"],
            "conclusion": record["conclusion"],
            "started_at": record["started_at"],
            "completed_at": record["completed_at"],
            "output": {
                "title": output["title"],
                "summary": output["summary"],
                "text": output["text"],
                "annotations_count": len(output["annotations"]),
                "annotations_url": f"{api}/check-runs/{record['id']}/annotations",
            },
            "name": record["name"],
            "check_suite": {"id": suite},
            "app": self._app_json(self._foreign_runs.get(record["id"])),
            "pull_requests": [
                {
                    "id": p.id,
                    "number": p.number,
                    "url": f"{api}/pulls/{p.number}",
                    "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": mini_repo},
                    "base": {"ref": p.base_ref, "sha": repo.default_sha, "repo": mini_repo},
                }
                for p in pulls
            ],
        }

    def _run_app_id(self, record: dict) -> int:
        slug = self._foreign_runs.get(record["id"])
        return self.app_id if slug is None else self._other_app_id(slug)

    def _suite_id(self, repo: Repo, record: dict) -> int:
        key = (repo.full_name, record["head_sha"], self._run_app_id(record))
        return self._suites.setdefault(key, next(self._ids))

    @handles("checks/list-suites-for-ref")
    def _list_check_suites(self, ctx: Ctx):
        repo = ctx.repo
        sha = self._resolve(repo, ctx.params["ref"])
        if sha is None:
            raise Reply(422, f"No commit found for SHA: {ctx.params['ref']}")
        runs = [r for name, r in self._check_runs.values() if name == repo.full_name and r["head_sha"] == sha]
        if "check_name" in ctx.query:
            runs = [r for r in runs if r["name"] == ctx.query["check_name"]]
        suites: dict[int, list[dict]] = {}
        for run in runs:
            suites.setdefault(self._suite_id(repo, run), []).append(run)
        if "app_id" in ctx.query:
            suites = {k: v for k, v in suites.items() if self._run_app_id(v[0]) == int(ctx.query["app_id"])}
        page, links = self._paginate(ctx, sorted(suites.items()))
        return (
            200,
            {"total_count": len(suites), "check_suites": [self._suite_json(repo, sha, i, r) for i, r in page]},
            links,
        )

    def _suite_json(self, repo: Repo, sha: str, suite_id: int, runs: list[dict]) -> dict:
        """A check suite: completed when all its runs are, concluding with the worst of their conclusions."""
        api = f"{self.base_url}/repos/{repo.full_name}"
        done = all(r["status"] == "completed" for r in runs)
        status = "completed" if done else "in_progress" if any(r["status"] != "queued" for r in runs) else "queued"
        order = ("action_required", "cancelled", "timed_out", "failure", "neutral", "skipped", "success")
        conclusions = {r["conclusion"] for r in runs}
        conclusion = next((c for c in order if c in conclusions), None) if done else None
        head = next((p for p in self.pulls.values() if p.repo == repo.full_name and p.head_sha == sha), None)
        commit = self._commit(repo, sha)
        pulls = self._check_run_json(repo, runs[0])["pull_requests"]
        return {
            "id": suite_id,
            "node_id": node_id("CS", suite_id),
            "head_branch": head.head_ref if head else None,
            "head_sha": sha,
            "status": status,
            "conclusion": conclusion,
            "url": f"{api}/check-suites/{suite_id}",
            "before": None,
            "after": sha,
            "pull_requests": pulls,
            "app": self._app_json(self._foreign_runs.get(runs[0]["id"])),
            "repository": self._repo_json(repo),
            "created_at": runs[0]["started_at"],
            "updated_at": runs[-1]["completed_at"] or runs[-1]["started_at"],
            "head_commit": {
                "id": sha,
                "tree_id": hashlib.sha1(repr(sorted(commit.files.items())).encode()).hexdigest(),
                "message": commit.message,
                "timestamp": iso(commit.at),
                "author": {"name": commit.author, "email": f"{commit.author}@users.noreply.github.com"},
                "committer": {"name": commit.author, "email": f"{commit.author}@users.noreply.github.com"},
            },
            "latest_check_runs_count": len({r["name"] for r in runs}),
            "check_runs_url": f"{api}/check-suites/{suite_id}/check-runs",
        }
