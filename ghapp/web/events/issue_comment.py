"""`issue_comment.created` on a pull request: a `/preview` command is stored for the command processor."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.commands import parse_command
from ghapp.core.payload import field, integer, text
from ghapp.db import commands

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
    await commands.store(
        conn,
        source="comment",
        command=parsed.command,
        unknown=parsed.unknown,
        installation_id=integer(data, "installation.id"),
        repo_id=integer(data, "repository.id"),
        repository=text(data, "repository.full_name", limit=255),
        pr_number=integer(issue, "number", bits=31),
        comment_id=integer(comment, "id"),
        author=text(comment, "user.login", limit=100),
    )
    result["command"] = parsed.command
