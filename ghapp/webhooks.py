"""`POST /webhooks`: verify, deduplicate and record desired state in one transaction. Nothing slow happens here:
no Terraform, no GitHub call; workers pick the change up from the database."""
from __future__ import annotations

import logging

from aiohttp import web
from gidgethub import BadRequest, ValidationFailure
from gidgethub.sansio import Event

from ghapp import keys, store
from ghapp.db import UNAVAILABLE
from ghapp.events import router
from ghapp.events.payload import MalformedPayload

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_SIGNATURE_HEADERS = ("x-hub-signature-256", "x-hub-signature")


def _reply(status: int, **body) -> web.Response:
    return web.json_response(body, status=status)


def parse_delivery(headers, body: bytes, secret: str | None) -> Event:
    """Raise `ValidationFailure` (401) or `MalformedPayload` (400); never anything else for bad input."""
    headers = {k.lower(): v for k, v in headers.items()}
    if secret is None:  # offline mode without a secret: signatures are not checked (see `ghapp serve` warning)
        for name in _SIGNATURE_HEADERS:
            headers.pop(name, None)
    for name in ("x-github-event", "x-github-delivery"):
        if not headers.get(name, "").strip():
            raise MalformedPayload(f"the {name} header is missing")
    if len(headers["x-github-delivery"]) > 200 or len(headers["x-github-event"]) > 100:
        raise MalformedPayload("the X-GitHub-Event or X-GitHub-Delivery header is too long")
    try:
        event = Event.from_http(headers, body, secret=secret)
    except BadRequest as e:
        raise MalformedPayload(str(e) or "expected a JSON body") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("the body is not valid JSON") from None
    if not isinstance(event.data, dict):
        raise MalformedPayload("the body is not a JSON object")
    if not isinstance(event.data.get("action", ""), str):
        raise MalformedPayload("action must be a string")
    return event


async def receive(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reply(413, error=f"payload larger than {MAX_BODY // (1024 * 1024)} MB")
    try:
        event = parse_delivery(request.headers, body, settings.webhook_secret)
    except ValidationFailure as e:
        log.warning("rejected a delivery with a bad signature from %s: %s", request.remote, e)
        return _reply(401, error="bad or missing signature")
    except MalformedPayload as e:
        return _reply(400, error=str(e))

    if not router.fetch(event):
        return _reply(200, ignored=f"{event.event}.{event.data.get('action', '')}".rstrip("."))
    if not request.app[keys.READY].is_set():
        return _reply(503, error="starting: the database is not ready yet")

    result: dict = {}
    try:
        async with request.app[keys.POOL].acquire() as conn, conn.transaction():
            if not await store.record_delivery(conn, event.delivery_id, event.event):
                return _reply(200, duplicate=event.delivery_id)
            await router.dispatch(event, conn=conn, settings=settings, result=result)
    except MalformedPayload as e:
        return _reply(400, error=str(e))
    except UNAVAILABLE as e:
        log.warning("delivery %s refused, database unavailable: %s", event.delivery_id, e)
        return _reply(503, error="database unavailable; redeliver later")
    if "ignored" in result:
        return _reply(200, **result)
    return _reply(202, accepted=event.delivery_id, **result)
