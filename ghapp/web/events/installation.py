"""The App uninstalled, suspended or removed from repositories: their environments are destroyed, even though
GitHub can no longer be told about it."""

from __future__ import annotations

from typing import cast

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.payload import MalformedPayload, field, integer
from ghapp.db import desired

router = Router()


@router.register("installation", action="deleted")
@router.register("installation", action="suspend")
async def removed(event: Event, *, conn, result: dict, **_deps) -> None:
    result["environments"] = await desired.installation_gone(conn, integer(event.data, "installation.id"))


@router.register("installation", action="unsuspend")
async def unsuspended(event: Event, *, conn, result: dict, **_deps) -> None:
    await desired.installation_back(conn, integer(event.data, "installation.id"))


@router.register("installation_repositories", action="removed")
async def repositories_removed(event: Event, *, conn, result: dict, **_deps) -> None:
    repos = field(event.data, "repositories_removed", list)
    ids = [r.get("id") for r in repos if isinstance(r, dict)]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in ids):
        raise MalformedPayload("repositories_removed[].id must be repository ids")
    result["environments"] = await desired.installation_gone(
        conn, integer(event.data, "installation.id"), cast(list[int], ids)
    )
