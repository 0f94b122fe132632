"""Pull requests: listing, reading, their changed files and commits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tests.fake_github.state import (
    Ctx,
    Pull,
    Reply,
    Repo,
    handles,
    iso,
    node_id,
)


class PullsMixin:
    """Pull requests."""

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str = "main",
        user: str = "octocat",
        fork: bool = False,
        state: str = "open",
        title: str | None = None,
        draft: bool = False,
        labels: Iterable[str] = (),
    ) -> Pull:
        """A pull request; `fork` puts its head in `<user>/<name>`. Adds the repository if unknown."""
        if repo.lower() not in self.repos:
            self.add_repo(repo)
        full_name = self.repos[repo.lower()].full_name
        pull = Pull(
            full_name,
            number,
            next(self._ids),
            head_sha or hashlib.sha1(f"{full_name}#{number}".encode()).hexdigest(),
            head_ref or f"feature-{number}",
            base_ref,
            user,
            fork,
            state,
            title or f"Change #{number}",
            self._started - 86400 + number * 60,
        )
        pull.draft, pull.labels = draft, list(labels)
        self._user_id(user)
        self.pulls[(full_name.lower(), number)] = pull
        return pull

    @handles("pulls/list")
    def _list_pulls(self, ctx: Ctx):
        query = ctx.query
        state = query.get("state", "open")
        pulls = [p for p in self.pulls.values() if p.repo == ctx.repo.full_name and state in ("all", p.state)]
        if "head" in query:
            owner, _, ref = query["head"].partition(":")
            pulls = [p for p in pulls if p.head_ref == ref and p.head_repo.split("/")[0].lower() == owner.lower()]
        if "base" in query:
            pulls = [p for p in pulls if p.base_ref == query["base"]]
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        pulls.sort(key=lambda p: (p.created_at, p.number), reverse=direction == "desc")
        page, links = self._paginate(ctx, pulls)
        return 200, [self._pull_json(p) for p in page], links

    @handles("pulls/get")
    def _get_pull(self, ctx: Ctx):
        pull = self._pull(ctx.repo.full_name, int(ctx.params["pull_number"]))
        comments = sum(1 for c in self._comments.values() if (c.repo, c.number) == (pull.repo, pull.number))
        files = self._pull_files(pull)
        return (
            200,
            self._pull_json(pull)
            | {
                "merged": pull.merged,
                "mergeable": True,
                "rebaseable": True,
                "mergeable_state": "clean",
                "merged_by": None,
                "comments": comments,
                "review_comments": 0,
                "maintainer_can_modify": pull.fork,
                "commits": len(self._pull_commits(pull)),
                "additions": sum(f["additions"] for f in files),
                "deletions": sum(f["deletions"] for f in files),
                "changed_files": len(files),
            },
            {},
        )

    def _pull(self, repo: str, number: int) -> Pull:
        pull = self.pulls.get((repo.lower(), number))
        if pull is None:
            raise Reply(404, "Not Found")
        return pull

    def _pull_json(self, pull: Pull) -> dict:
        repo = self.repos[pull.repo.lower()]
        api, html = f"{self.base_url}/repos/{repo.full_name}", f"https://github.com/{repo.full_name}"
        url = f"{api}/pulls/{pull.number}"
        head_repo = Repo(pull.head_repo, repo.id + 1_000_000) if pull.fork else repo
        closed = iso(pull.created_at + 3600) if pull.state == "closed" else None
        links = {
            "self": url,
            "html": f"{html}/pull/{pull.number}",
            "issue": f"{api}/issues/{pull.number}",
            "comments": f"{api}/issues/{pull.number}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": f"{api}/statuses/{pull.head_sha}",
        }
        level = repo.collaborators.get(pull.user.lower())
        association = (
            "OWNER"
            if pull.user.lower() == repo.owner.lower()
            else "COLLABORATOR"
            if level in ("admin", "maintain", "write", "triage")
            else "CONTRIBUTOR"
        )
        return {
            "url": url,
            "id": pull.id,
            "node_id": node_id("PR", pull.id),
            "html_url": links["html"],
            "diff_url": f"{links['html']}.diff",
            "patch_url": f"{links['html']}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self._user_json(pull.user),
            "body": None,
            "labels": [self._label_json(repo, name) for name in pull.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at),
            "closed_at": closed,
            "merged_at": closed if pull.merged else None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{head_repo.owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user_json(head_repo.owner),
                "repo": self._repo_json(head_repo, fork=pull.fork),
            },
            "base": {
                "label": f"{repo.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": repo.default_sha,
                "user": self._user_json(repo.owner),
                "repo": self._repo_json(repo),
            },
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": association,
            "auto_merge": None,
            "draft": pull.draft,
        }

    def set_pull_files(self, repo: str, number: int, files: Iterable[str | dict]) -> None:
        """The pull request's changed files (pulls/list-files): paths (status `modified`, one line changed) or dicts
        with `filename` and any of `status`, `additions`, `deletions`, `previous_filename`. Without this, the
        files are the difference between the base branch's commit and the head commit (see `add_commit`)."""
        pull = self._pull(self._repo(repo).full_name, number)
        r = self._repo(repo)
        shaped = []
        for f in files:
            f = {"filename": f} if isinstance(f, str) else dict(f)
            status = f.get("status", "modified")
            data = self._file_json(
                r,
                pull.head_sha,
                f["filename"],
                status,
                f.get("additions", 1),
                f.get("deletions", 1 if status == "modified" else 0),
            )
            if "previous_filename" in f:
                data["previous_filename"] = f["previous_filename"]
            shaped.append(data)
        pull.files = shaped

    def set_pull_commits(self, repo: str, number: int, shas: Iterable[str]) -> None:
        """The pull request's commits, oldest first (pulls/list-commits); the last is its head."""
        pull = self._pull(self._repo(repo).full_name, number)
        pull.commits = list(shas)
        pull.head_sha = pull.commits[-1]

    def _pull_files(self, pull: Pull) -> list[dict]:
        if pull.files is not None:
            return pull.files
        repo = self.repos[pull.repo.lower()]
        base = repo.commits.get(
            repo.branches.get(pull.base_ref, repo.default_sha if pull.base_ref == repo.default_branch else "")
        )
        head = repo.commits.get(pull.head_sha)
        return self._diff_files(repo, pull.head_sha, base.files if base else {}, head.files if head else {})

    def _pull_commits(self, pull: Pull) -> list[str]:
        return pull.commits if pull.commits is not None else [pull.head_sha]

    @handles("pulls/list-files")
    def _list_pull_files(self, ctx: Ctx):
        pull = self._pull(ctx.repo.full_name, int(ctx.params["pull_number"]))
        page, links = self._paginate(ctx, self._pull_files(pull)[:3000])  # GitHub lists at most 3,000 files
        return 200, page, links

    @handles("pulls/list-commits")
    def _list_pull_commits(self, ctx: Ctx):
        pull = self._pull(ctx.repo.full_name, int(ctx.params["pull_number"]))
        commits = [self._commit(ctx.repo, sha) for sha in self._pull_commits(pull)[:250]]  # GitHub: at most 250
        page, links = self._paginate(ctx, commits)
        return 200, [self._commit_json(ctx.repo, c) for c in page], links
