"""`POST /webhooks`: verify, deduplicate and record desired state in one transaction. Nothing slow happens here:
no Terraform, no GitHub call; workers pick the change up from the database."""

from __future__ import annotations

import json
import logging
import urllib.parse

from aiohttp import web
from gidgethub import ValidationFailure
from gidgethub.sansio import Event, validate_event

from ghapp.core.payload import MalformedPayload
from ghapp.db import UNAVAILABLE, desired
from ghapp.web import keys
from ghapp.web.events import router

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def _reply(status: int, **body) -> web.Response:
    return web.json_response(body, status=status)


def parse_delivery(headers, body: bytes, secret: str | None) -> Event:
    """Signature first (401 before anything else is looked at), then the headers and the JSON body (400).
    Raises only `ValidationFailure` or `MalformedPayload`, whatever the input."""
    headers = {k.lower(): v for k, v in headers.items()}
    if secret is not None:  # offline mode without a secret: signatures are not checked (see `ghapp serve` warning)
        signature = headers.get("x-hub-signature-256") or headers.get("x-hub-signature") or ""
        if not signature:
            raise ValidationFailure("signature is missing")
        if not signature.isascii():
            raise ValidationFailure("signature is not ASCII")
        validate_event(body, signature=signature, secret=secret)
    for name in ("x-github-event", "x-github-delivery"):
        if not headers.get(name, "").strip():
            raise MalformedPayload(f"the {name} header is missing")
    if len(headers["x-github-delivery"]) > 200 or len(headers["x-github-event"]) > 100:
        raise MalformedPayload("the X-GitHub-Event or X-GitHub-Delivery header is too long")
    if not all(_is_utf8(headers[name]) for name in ("x-github-event", "x-github-delivery")):
        raise MalformedPayload("the X-GitHub-Event or X-GitHub-Delivery header is not UTF-8")
    data = _decode_json(headers.get("content-type", ""), body)
    if not isinstance(data, dict):
        raise MalformedPayload("the body is not a JSON object")
    if not isinstance(data.get("action", ""), str):
        raise MalformedPayload("action must be a string")
    return Event(data, event=headers["x-github-event"], delivery_id=headers["x-github-delivery"])


def _is_utf8(text: str) -> bool:
    """aiohttp keeps undecodable header bytes as surrogates, which PostgreSQL cannot store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _decode_json(content_type: str, body: bytes):
    mime, _, params = content_type.partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        text = body.decode(charset)
        mime = mime.strip().lower()
        if mime == "application/x-www-form-urlencoded":  # the webhook's other content type on GitHub
            text = urllib.parse.parse_qs(text)["payload"][0]
        elif mime != "application/json":
            raise MalformedPayload("expected Content-Type: application/json")
        return json.loads(text)
    except (LookupError, UnicodeDecodeError):
        raise MalformedPayload(f"the body is not valid {charset}") from None
    except (ValueError, KeyError, IndexError, RecursionError):
        raise MalformedPayload("the body is not valid JSON") from None


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
            if not await desired.record_delivery(conn, event.delivery_id, event.event):
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
