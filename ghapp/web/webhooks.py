"""`POST /webhooks`: verify and parse here; deduplicate and record desired state in the group commit (web/intake.py:
concurrent deliveries share one transaction). Nothing slow happens here: no Terraform, no GitHub call; workers pick
the change up from the database."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from gidgethub import ValidationFailure
from gidgethub.sansio import Event, validate_event

from ghapp.core.payload import MalformedPayload
from ghapp.web import keys
from ghapp.web.events import router

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SIGNATURE = re.compile(r"sha256=[0-9a-fA-F]{64}")  # X-Hub-Signature-256; the SHA-1 X-Hub-Signature is not accepted
SIGNED_EVENT = web.RequestKey("signed_event", str)  # the X-GitHub-Event of a delivery whose signature was checked
DISCONNECTED = "the client went away before sending the whole body"


class BodyError(Exception):
    """The body could not be read whole: too large (413), too slow (408) or the client went away."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most `limit` bytes (a larger Content-Length is refused before reading), within
    `timeout` seconds (a body trickled in slowly holds a connection and memory)."""
    too_large = f"payload larger than {limit // (1024 * 1024)} MB"
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, too_large)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, too_large)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, f"the body was not received within {timeout:g} s") from None
    except (ConnectionError, HttpProcessingError):
        raise BodyError(400, DISCONNECTED) from None
    return b"".join(chunks)


def _reply(status: int, **body) -> web.Response:
    return web.json_response(body, status=status)


def parse_delivery(headers, body: bytes, secret: str | None) -> Event:
    """Signature first (401 before anything else is looked at), then the headers and the JSON body (400).
    Raises only `ValidationFailure` or `MalformedPayload`, whatever the input."""
    headers = {k.lower(): v for k, v in headers.items()}
    if secret is not None:  # offline mode without a secret, on loopback only (`ghapp serve` refuses otherwise)
        signature = check_signature_header(headers)
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


def check_signature_header(headers) -> str:
    """The `X-Hub-Signature-256` value if it is present and well-formed (checked before the body is read);
    SHA-1 (`X-Hub-Signature`) alone is refused: gidgethub would fall back to it."""
    signature = next((v for k, v in headers.items() if k.lower() == "x-hub-signature-256"), "")
    if not signature:
        raise ValidationFailure("the X-Hub-Signature-256 header is missing (SHA-1 signatures are not accepted)")
    if not SIGNATURE.fullmatch(signature):
        raise ValidationFailure("the X-Hub-Signature-256 header is not sha256=<64 hex digits>")
    return signature


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
        if settings.webhook_secret is not None:
            check_signature_header(request.headers)  # before a byte of the body is read
        body = await read_body(request, MAX_BODY, settings.body_timeout)
        event = parse_delivery(request.headers, body, settings.webhook_secret)
    except ValidationFailure as e:
        log.warning("rejected a delivery with a bad signature from %s: %s", request.remote, e)
        return _reply(401, error="bad or missing signature")
    except BodyError as e:
        if e.status == 400:
            log.info("a delivery from %s ended early: %s", request.remote, e)
        return _reply(e.status, error=str(e))
    except MalformedPayload as e:
        return _reply(400, error=str(e))
    if settings.webhook_secret is not None:
        request[SIGNED_EVENT] = event.event

    if not router.fetch(event):
        return _reply(200, ignored=f"{event.event}.{event.data.get('action', '')}".rstrip("."))
    if not request.app[keys.READY].is_set():
        return _reply(503, error="starting: the database is not ready yet")

    answer = await request.app[keys.INTAKE].submit(event)  # with concurrent deliveries, in one transaction
    return _reply(answer.status, **answer.body)
