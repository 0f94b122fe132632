"""Who may write: an operator signed in with GHAPP_ADMIN_TOKEN (a server-side session in PostgreSQL, named by a
random id in the cookie, with a CSRF token bound to it) or an API client presenting
`Authorization: Bearer <GHAPP_ADMIN_TOKEN>`. Wrong admin tokens are throttled per client address; a write without
credentials or without its CSRF token is refused but not counted (any page the operator opens can send those, and
must not lock the operator out; the session id and CSRF token are random, so there is nothing to guess). The request
helpers answer with a `Refusal` instead of raising, so HTML and JSON callers word it their own way."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from ghapp.core.policy import backoff
from ghapp.db import sessions as session_store
from ghapp.web import keys

COOKIE = "ghapp_session"
SESSION_TTL = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
WRITES_DISABLED = "writes are disabled: GHAPP_ADMIN_TOKEN is not set"


def key_id(admin_token: str) -> str:
    """Names the admin token a session was opened with, without storing it: a new token signs everyone out."""
    return hmac.new(admin_token.encode(), b"ghapp dashboard session v2", hashlib.sha256).hexdigest()[:32]


def same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison (of the UTF-8 bytes, so any text can be compared)."""
    return hmac.compare_digest(expected.encode(), given.encode())


class Throttle:
    """Failed sign-ins and writes per client address (pure; the clock is injected): the first `free` failures
    cost nothing, each one after that locks the client out for twice as long as the last, up to `cap` seconds.
    At most `size` clients are remembered (the oldest are forgotten)."""

    def __init__(
        self,
        free: int = 5,
        base: float = 1.0,
        cap: float = 15 * 60,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap, self.size, self.clock = free, base, cap, size, clock
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # client -> (failures, blocked until)

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may try again; 0 when it may now."""
        _failures, until = self._clients.get(client, (0, 0.0))
        return max(0, math.ceil(until - self.clock()))

    def failed(self, client: str) -> None:
        failures = self._clients.pop(client, (0, 0.0))[0] + 1
        locked = failures >= self.free
        until = self.clock() + backoff(failures - self.free + 1, self.base, self.cap) if locked else 0.0
        self._clients[client] = (failures, until)
        while len(self._clients) > self.size:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


@dataclasses.dataclass(frozen=True)
class Refusal:
    status: int  # 401: no credentials; 403: wrong ones, bad CSRF token, or writes disabled; 429: too many failures
    reason: str
    retry_after: int = 0


@dataclasses.dataclass(frozen=True)
class Session:
    id: str
    csrf: str


_SESSION = web.RequestKey("session", object)


@web.middleware
async def sessions_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Looks the session cookie up once per request (only where a cookie was sent and writes are enabled)."""
    request[_SESSION] = None
    token = request.app[keys.SETTINGS].admin_token
    cookie = request.cookies.get(COOKIE, "")
    if token and cookie and 20 <= len(cookie) <= 100 and request.app[keys.READY].is_set():
        async with request.app[keys.POOL].acquire() as conn:
            csrf = await session_store.find(conn, cookie, key_id(token))
        if csrf is not None:
            request[_SESSION] = Session(cookie, csrf)
    return await handler(request)


def session(request: web.Request) -> Session | None:
    """The signed-in operator's session, if any."""
    found = request.get(_SESSION)
    return found if isinstance(found, Session) else None


def throttled(request: web.Request) -> Refusal | None:
    wait = request.app[keys.THROTTLE].retry_after(client_address(request))
    if wait:
        return Refusal(429, f"too many failed attempts from this address; try again in {wait} s", wait)
    return None


def _failed(request: web.Request, refusal: Refusal) -> Refusal:
    request.app[keys.THROTTLE].failed(client_address(request))
    return refusal


def check_form(request: web.Request, form) -> Refusal | None:
    """A dashboard form POST: needs a session and its CSRF token."""
    if request.app[keys.SETTINGS].admin_token is None:
        return Refusal(403, WRITES_DISABLED)
    if refusal := throttled(request):
        return refusal
    current = session(request)
    if current is None:
        return Refusal(401, "sign in first")
    if not same_secret(current.csrf, str(form.get(CSRF_FIELD, ""))):
        return Refusal(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return None


def check_api(request: web.Request) -> Refusal | None:
    """An API write: a bearer token, or a session with the CSRF token in a header."""
    token = request.app[keys.SETTINGS].admin_token
    if token is None:
        return Refusal(403, WRITES_DISABLED)
    if refusal := throttled(request):
        return refusal
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return _failed(request, Refusal(401, "use Authorization: Bearer <GHAPP_ADMIN_TOKEN>"))
        if not same_secret(token, credential.strip()):
            return _failed(request, Refusal(403, "wrong token"))
        request.app[keys.THROTTLE].succeeded(client_address(request))
        return None
    current = session(request)
    if current is None:
        return Refusal(401, "use Authorization: Bearer <GHAPP_ADMIN_TOKEN>")
    if not same_secret(current.csrf, request.headers.get(CSRF_HEADER, "")):
        return Refusal(403, f"a session needs the {CSRF_HEADER} header")
    return None


async def sign_in(request: web.Request, response: web.StreamResponse) -> None:
    """A new server-side session for the operator, named by a random id in a hardened cookie."""
    token = request.app[keys.SETTINGS].admin_token
    assert token is not None, "sign_in without an admin token"
    session_id = secrets.token_urlsafe(32)
    async with request.app[keys.POOL].acquire() as conn:
        await session_store.create(conn, session_id, key_id(token), secrets.token_urlsafe(32), SESSION_TTL)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_TTL,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


async def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    """Ends the session on the server (the cookie alone is worth nothing afterwards) and clears the cookie."""
    current = session(request)
    if current is not None:
        async with request.app[keys.POOL].acquire() as conn:
            await session_store.delete(conn, current.id)
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=_secure(request))


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[keys.SETTINGS].base_url.startswith("https://")
