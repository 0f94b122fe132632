"""`issue_comment.created` on a pull request: a `/preview` command is stored for the command processor."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.commands import parse_command
from ghapp.core.payload import field, integer, text

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
    await conn.execute(
        """INSERT INTO commands (source, command, unknown, installation_id, repo_id, repository, pr_number,
                                 comment_id, author)
           VALUES ('comment', $1, $2, $3, $4, $5, $6, $7, $8)""",
        parsed.command,
        parsed.unknown,
        integer(data, "installation.id"),
        integer(data, "repository.id"),
        text(data, "repository.full_name", limit=255),
        integer(issue, "number", bits=31),
        integer(comment, "id"),
        text(comment, "user.login", limit=100),
    )
    result["command"] = parsed.command
