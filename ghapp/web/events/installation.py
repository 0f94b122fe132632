"""The App uninstalled, suspended or removed from repositories: their environments are destroyed, even though
GitHub can no longer be told about it."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.contract import NOTIFY_CHANNEL
from ghapp.core.payload import MalformedPayload, field, integer
from ghapp.db import store

router = Router()

_GONE = "UPDATE environments SET github_gone = true, " + store.ABSENT + " WHERE {where}"


async def _gone(conn, where: str, *args, result: dict) -> None:
    status = await conn.execute(_GONE.format(where=where), *args)
    result["environments"] = int(status.split()[-1])
    await conn.execute("SELECT pg_notify($1, 'installation')", NOTIFY_CHANNEL)


@router.register("installation", action="deleted")
@router.register("installation", action="suspend")
async def removed(event: Event, *, conn, result: dict, **_deps) -> None:
    await _gone(conn, "installation_id = $1", integer(event.data, "installation.id"), result=result)


@router.register("installation", action="unsuspend")
async def unsuspended(event: Event, *, conn, result: dict, **_deps) -> None:
    await conn.execute(
        "UPDATE environments SET github_gone = false WHERE installation_id = $1", integer(event.data, "installation.id")
    )


@router.register("installation_repositories", action="removed")
async def repositories_removed(event: Event, *, conn, result: dict, **_deps) -> None:
    repos = field(event.data, "repositories_removed", list)
    ids = [r.get("id") for r in repos if isinstance(r, dict)]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in ids):
        raise MalformedPayload("repositories_removed[].id must be repository ids")
    await _gone(
        conn,
        "installation_id = $1 AND repo_id = ANY($2::bigint[])",
        integer(event.data, "installation.id"),
        ids,
        result=result,
    )
