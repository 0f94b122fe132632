"""A commit's checks changed (`check_run` or `check_suite` completed, a commit `status`): previews held waiting for
`wait_for` checks at that commit are resolved again. Check runs and suites of ghapp's own App are not waited for."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.commands import SHA_ARGUMENT
from ghapp.core.payload import MalformedPayload, field, integer, text
from ghapp.db import desired

router = Router()


async def _changed(event: Event, sha_path: str, name: str | None, *, conn, result: dict) -> None:
    sha = field(event.data, sha_path, str)
    if len(sha) != 40 or not SHA_ARGUMENT.fullmatch(sha):
        raise MalformedPayload(f"{sha_path} is not a commit SHA")
    result["environments"] = await desired.checks_changed(conn, integer(event.data, "repository.id"), sha, name)


def _ours(event: Event, path: str, settings) -> bool:
    return not settings.offline and str(field(event.data, path, int, optional=True)) == str(settings.app_id)


@router.register("check_run", action="completed")
async def check_run_completed(event: Event, *, conn, settings, result: dict, **_deps) -> None:
    if _ours(event, "check_run.app.id", settings):
        result["ignored"] = "our own check run"
        return
    name = text(event.data, "check_run.name", limit=255)
    await _changed(event, "check_run.head_sha", name, conn=conn, result=result)


@router.register("check_suite", action="completed")
async def check_suite_completed(event: Event, *, conn, settings, result: dict, **_deps) -> None:
    if _ours(event, "check_suite.app.id", settings):
        result["ignored"] = "our own check suite"
        return
    await _changed(event, "check_suite.head_sha", None, conn=conn, result=result)


@router.register("status")
async def status(event: Event, *, conn, result: dict, **_deps) -> None:
    if field(event.data, "state", str) == "pending":
        result["ignored"] = "a pending status changes no hold"
        return
    await _changed(event, "sha", text(event.data, "context", limit=255), conn=conn, result=result)
