"""Who may write: an operator signed in with GHAPP_ADMIN_TOKEN (an HMAC-signed session cookie, with CSRF tokens
bound to it) or an API client presenting `Authorization: Bearer <GHAPP_ADMIN_TOKEN>`. Signing is pure; the
request helpers answer with a `Refusal` instead of raising, so HTML and JSON callers word it their own way."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time

from aiohttp import web

from ghapp.web import keys

COOKIE = "ghapp_session"
SESSION_TTL = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
WRITES_DISABLED = "writes are disabled: GHAPP_ADMIN_TOKEN is not set"


def session_key(admin_token: str) -> bytes:
    """The signing key; a new admin token signs every session out."""
    return hmac.new(admin_token.encode(), b"ghapp dashboard session v1", hashlib.sha256).digest()


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def make_session(key: bytes, now: float, nonce: str | None = None) -> str:
    """A cookie value `<expires>.<nonce>.<mac>`."""
    payload = f"{int(now) + SESSION_TTL}.{nonce or secrets.token_urlsafe(18)}"
    return f"{payload}.{_mac(key, 'session.' + payload)}"


def session_nonce(key: bytes, cookie: str, now: float) -> str | None:
    """The session's nonce if `cookie` is ours and unexpired, else None."""
    parts = cookie.split(".")
    if len(parts) != 3:
        return None
    expires, nonce, mac = parts
    if not hmac.compare_digest(mac.encode(), _mac(key, f"session.{expires}.{nonce}").encode()):
        return None
    return nonce if expires.isdigit() and int(expires) > now else None


def csrf_token(key: bytes, nonce: str) -> str:
    return _mac(key, f"csrf.{nonce}")


def same_secret(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclasses.dataclass(frozen=True)
class Refusal:
    status: int  # 401: no credentials; 403: wrong ones, bad CSRF token, or writes disabled
    reason: str


@dataclasses.dataclass(frozen=True)
class Session:
    csrf: str


def _key(request: web.Request) -> bytes | None:
    token = request.app[keys.SETTINGS].admin_token
    return session_key(token) if token else None


def session(request: web.Request) -> Session | None:
    """The signed-in operator's session, if any."""
    key = _key(request)
    cookie = request.cookies.get(COOKIE)
    if key is None or not cookie:
        return None
    nonce = session_nonce(key, cookie, time.time())
    return Session(csrf_token(key, nonce)) if nonce else None


def check_form(request: web.Request, form) -> Refusal | None:
    """A dashboard form POST: needs a session and its CSRF token."""
    if _key(request) is None:
        return Refusal(403, WRITES_DISABLED)
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
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return Refusal(401, "use Authorization: Bearer <GHAPP_ADMIN_TOKEN>")
        return None if same_secret(token, credential.strip()) else Refusal(403, "wrong token")
    current = session(request)
    if current is None:
        return Refusal(401, "use Authorization: Bearer <GHAPP_ADMIN_TOKEN>")
    if not same_secret(current.csrf, request.headers.get(CSRF_HEADER, "")):
        return Refusal(403, f"a session needs the {CSRF_HEADER} header")
    return None


def sign_in(request: web.Request, response: web.StreamResponse) -> None:
    key = _key(request)
    assert key is not None, "sign_in without an admin token"
    response.set_cookie(
        COOKIE,
        make_session(key, time.time()),
        max_age=SESSION_TTL,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=_secure(request))


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[keys.SETTINGS].base_url.startswith("https://")
