"""Issue comments, reactions and labels (a pull request is an issue)."""

from __future__ import annotations

import copy
import hashlib
import time
from urllib.parse import quote

from tests.fake_github.state import (
    Comment,
    Ctx,
    Reply,
    Repo,
    handles,
    iso,
    node_id,
    parse_iso,
)


class IssuesMixin:
    """Comments, reactions, labels."""

    def add_comment(
        self, repo: str, number: int, body: str, *, user: str = "octocat", author_association: str = "OWNER"
    ) -> dict:
        """A comment written by a person (not the App) on a pull request added before; returns its JSON."""
        assert (repo.lower(), number) in self.pulls, f"no pull request {repo}#{number}: add_pull() first"
        comment = self._new_comment(self._repo(repo).full_name, number, body, user, False, author_association)
        return self._comment_json(comment)

    def comments(self, repo: str, number: int) -> list[dict]:
        full_name = self._repo(repo).full_name
        return [self._comment_json(c) for c in self._comments.values() if (c.repo, c.number) == (full_name, number)]

    def reactions(self, comment_id: int) -> list[dict]:
        return copy.deepcopy(self._reactions.get(comment_id, []))

    @handles("issues/create-comment")
    def _create_comment(self, ctx: Ctx):
        number = int(ctx.params["issue_number"])
        self._pull(ctx.repo.full_name, number)
        self._check_length(ctx.body["body"], 65536, "IssueComment", "body")
        comment = self._new_comment(ctx.repo.full_name, number, ctx.body["body"], self.bot_login, True, "NONE")
        data = self._comment_json(comment)
        return 201, data, {"Location": data["url"]}

    @handles("issues/list-comments")
    def _list_comments(self, ctx: Ctx):
        number = int(ctx.params["issue_number"])
        self._pull(ctx.repo.full_name, number)
        found = [c for c in self._comments.values() if (c.repo, c.number) == (ctx.repo.full_name, number)]
        if "since" in ctx.query:
            since = parse_iso(ctx.query["since"])
            found = [c for c in found if c.updated_at >= since]
        page, links = self._paginate(ctx, found)
        return 200, [self._comment_json(c) for c in page], links

    @handles("issues/update-comment")
    def _update_comment(self, ctx: Ctx):
        comment = self._comment(ctx)
        self._check_length(ctx.body["body"], 65536, "IssueComment", "body")
        comment.body, comment.updated_at = ctx.body["body"], time.time()
        return 200, self._comment_json(comment), {}

    @handles("issues/delete-comment")
    def _delete_comment(self, ctx: Ctx):
        comment = self._comment(ctx)
        del self._comments[comment.id]
        self._reactions.pop(comment.id, None)
        return 204, None, {}

    @handles("reactions/create-for-issue-comment")
    def _create_reaction(self, ctx: Ctx):
        comment = self._comment(ctx)
        reactions = self._reactions.setdefault(comment.id, [])
        existing = next(
            (r for r in reactions if r["user"]["login"] == self.bot_login and r["content"] == ctx.body["content"]), None
        )
        if existing is not None:
            return 200, existing, {}
        reaction = {
            "id": next(self._ids),
            "node_id": node_id("REA", len(reactions) + comment.id),
            "user": self._user_json(self.bot_login),
            "content": ctx.body["content"],
            "created_at": iso(time.time()),
        }
        reactions.append(reaction)
        return 201, reaction, {}

    def _comment(self, ctx: Ctx) -> Comment:
        comment = self._comments.get(int(ctx.params["comment_id"]))
        if comment is None or comment.repo != ctx.repo.full_name:
            raise Reply(404, "Not Found")
        return comment

    def _new_comment(self, repo: str, number: int, body: str, user: str, by_app: bool, association: str) -> Comment:
        now = time.time()
        comment = Comment(next(self._ids), repo, number, body, user, by_app, association, now, now)
        self._comments[comment.id] = comment
        return comment

    def _comment_json(self, comment: Comment) -> dict:
        api = f"{self.base_url}/repos/{comment.repo}"
        counts = dict.fromkeys(("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"), 0)
        for reaction in self._reactions.get(comment.id, []):
            counts[reaction["content"]] += 1
        return {
            "id": comment.id,
            "node_id": node_id("IC", comment.id),
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{comment.repo}/pull/{comment.number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "issue_url": f"{api}/issues/{comment.number}",
            "author_association": comment.author_association,
            "performed_via_github_app": self._app_json() if comment.by_app else None,
            "reactions": {
                "url": f"{api}/issues/comments/{comment.id}/reactions",
                "total_count": sum(counts.values()),
                **counts,
            },
        }

    def _check_length(self, text: str, limit: int, resource: str, field: str) -> None:
        if len(text) > limit:
            raise Reply(
                422,
                "Validation Failed",
                violation=True,
                errors=[
                    {
                        "resource": resource,
                        "code": "custom",
                        "field": field,
                        "message": f"{field} is too long (maximum is {limit} characters)",
                    }
                ],
            )

    @handles("issues/get-comment")
    def _get_comment(self, ctx: Ctx):
        return 200, self._comment_json(self._comment(ctx)), {}

    @handles("issues/list-labels-on-issue")
    def _list_labels(self, ctx: Ctx):
        pull = self._pull(ctx.repo.full_name, int(ctx.params["issue_number"]))
        page, links = self._paginate(ctx, pull.labels)
        return 200, [self._label_json(ctx.repo, name) for name in page], links

    def _label_json(self, repo: Repo, name: str) -> dict:
        label_id = int(hashlib.sha1(f"{repo.full_name}:{name}".encode()).hexdigest()[:8], 16)
        return {
            "id": label_id,
            "node_id": node_id("LA", label_id),
            "url": f"{self.base_url}/repos/{repo.full_name}/labels/{quote(name)}",
            "name": name,
            "description": "",  # a string in every answer that holds labels (pulls/list's may not be null)
            "color": hashlib.sha1(name.encode()).hexdigest()[:6],
            "default": False,
        }
