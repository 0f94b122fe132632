"""`issue_comment.created` on a pull request: a `/preview` command is stored for the command processor, once per
comment, with the commit it deploys: the one named, else the head ghapp knew when the comment arrived (a push
recorded after the comment was written does not count: the maintainer cannot have seen it)."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.commands import parse_command
from ghapp.core.payload import field, integer, text
from ghapp.core.pulls import timestamp
from ghapp.db import commands, reads

router = Router()


def is_bot(user) -> bool:
    if not isinstance(user, dict):
        return False
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


@router.register("issue_comment", action="created")
async def created(event: Event, *, conn, settings, result: dict, **_deps) -> None:
    data = event.data
    issue = field(data, "issue", dict)
    comment = field(data, "comment", dict)
    if settings.offline:
        result["ignored"] = "commands need the GitHub App (offline mode)"
        return
    if (
        "pull_request" not in issue
        or is_bot(comment.get("user"))
        or is_bot(data.get("sender"))
        or comment.get("performed_via_github_app")
    ):
        result["ignored"] = "not a person's comment on a pull request"
        return
    parsed = parse_command(comment.get("body") if isinstance(comment.get("body"), str) else "")
    if parsed is None:
        result["ignored"] = "no /preview command"
        return
    repo_id = integer(data, "repository.id")
    pr_number = integer(issue, "number", bits=31)
    assert repo_id is not None and pr_number is not None  # not optional: `integer` raised otherwise
    sha = parsed.sha
    if sha is None and parsed.command in ("deploy", "redeploy"):
        sha = await _head_seen(conn, repo_id, pr_number, timestamp(comment, "created_at"))
    stored = await commands.store(
        conn,
        source="comment",
        command=parsed.command,
        unknown=parsed.unknown,
        installation_id=integer(data, "installation.id"),
        repo_id=repo_id,
        repository=text(data, "repository.full_name", limit=255),
        pr_number=pr_number,
        comment_id=integer(comment, "id"),
        author=text(comment, "user.login", limit=100),
        sha=sha,
        sha_named=parsed.sha is not None,
    )
    if not stored:
        result["ignored"] = "this comment's command was queued before"
        return
    result["command"] = parsed.command


async def _head_seen(conn, repo_id: int, pr_number: int, written_at) -> str | None:
    """The PR's head as ghapp knows it now, unless the event that said so is not older than the comment (GitHub's
    times have whole seconds: the author may have pushed after the maintainer wrote it, and the command has to
    name its commit)."""
    known = await reads.known_head(conn, repo_id, pr_number)
    if known is None or known["head_sha"] is None:
        return None
    if written_at is not None and known["pr_updated_at"] is not None and known["pr_updated_at"] >= written_at:
        return None
    return known["head_sha"]
