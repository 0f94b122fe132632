"""A person revoked the App's authorization (GitHub settings → Applications): every preview session of theirs
ends. The sender is the person; GitHub sends this event to every App, unsubscribed."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.payload import integer
from ghapp.db import access

router = Router()


@router.register("github_app_authorization", action="revoked")
async def revoked(event: Event, *, conn, result: dict, **_deps) -> None:
    result["sessions_ended"] = await access.end_sessions(conn, integer(event.data, "sender.id"))
