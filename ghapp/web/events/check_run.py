"""`check_run` buttons on our own check runs: Redeploy / Destroy / Deploy (`requested_action`), and "Re-run". A button
deploys (and, for a fork, approves) that check run's commit, never the head at processing time.

A press has no comment id, and `requested_action` carries no time of its own, so a replay with a new delivery id
is not told apart from a second press: it is queued again, harmlessly: the sender's permission is checked again
when it is processed, and it can only redeploy (or destroy) the commit of that check run, which that sender
approved by pressing the button."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.commands import SHA_ARGUMENT
from ghapp.core.payload import field, integer, text
from ghapp.db import commands, reads

router = Router()
ACTIONS = {"redeploy": "redeploy", "destroy": "destroy", "deploy": "deploy"}  # Deploy: a `deploy: manual` hold


async def _store(event: Event, command: str, *, conn, result: dict) -> None:
    data = event.data
    env_id = field(data, "check_run.external_id", str, optional=True) or ""
    env = await reads.environment_of_check_run(
        conn,
        int(env_id) if env_id.isascii() and env_id.isdigit() and len(env_id) < 18 else -1,
        integer(data, "repository.id"),
    )
    if env is None:
        result["ignored"] = "not a check run of a known environment"
        return
    await commands.store(
        conn,
        source="check_run",
        command=command,
        installation_id=integer(data, "installation.id"),
        repo_id=integer(data, "repository.id"),
        repository=env["repository"],
        pr_number=env["pr_number"],
        author=text(data, "sender.login", limit=100),
        sha=_commit(data),
    )
    result["command"] = command


def _commit(data) -> str | None:
    sha = field(data, "check_run.head_sha", str, optional=True)
    return sha if sha is not None and len(sha) == 40 and SHA_ARGUMENT.fullmatch(sha) else None


def _ours(event: Event, settings) -> bool:
    app_id = field(event.data, "check_run.app.id", int, optional=True)
    return not settings.offline and str(app_id) == str(settings.app_id)


@router.register("check_run", action="requested_action")
async def requested_action(event: Event, *, conn, settings, result: dict, **_deps) -> None:
    identifier = field(event.data, "requested_action.identifier", str, optional=True)
    if not _ours(event, settings) or identifier not in ACTIONS:
        result["ignored"] = "not one of our check-run buttons"
        return
    await _store(event, ACTIONS[identifier], conn=conn, result=result)


@router.register("check_run", action="rerequested")
async def rerequested(event: Event, *, conn, settings, result: dict, **_deps) -> None:
    if not _ours(event, settings):
        result["ignored"] = "not our check run"
        return
    await _store(event, "redeploy", conn=conn, result=result)
