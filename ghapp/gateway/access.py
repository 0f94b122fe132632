"""Who may see a preview: the guard the gateway runs before proxying, "Sign in with GitHub" (the App's OAuth web
flow), the access decision for a Kubernetes Gateway or ingress controller, and automation tokens.

The way of one sign-in:
1. A browser asks `http://<env>.<domain>/page` of a `repository` preview without a session: `check_access` sends it
   to ghapp's `/gateway/sign-in?to=<that URL>` (the return URL must be a preview host of this domain).
2. `/gateway/sign-in` keeps a random `state` in a short cookie on ghapp's own host and sends the browser to GitHub's
   authorize page; GitHub comes back to the one callback URL, `/gateway/callback`, with `code` and `state`.
3. The callback checks `state` against the cookie (CSRF), exchanges the code for the person's user-to-server token,
   asks `GET /user` who they are and `GET /repos/{owner}/{repo}` whether they can read the preview's repository
   (the token is then dropped: ghapp keeps no person's token), and hands off to the preview host with a ticket:
   random, stored hashed, valid one minute, for that host only, redeemed once.
4. `<preview host>/_ghapp/session?ticket=...` turns the ticket into a session cookie on the preview's own host
   (HttpOnly, SameSite=Lax, Secure on https, never on the parent domain) and returns to the page.
Later requests find the session (cached `SESSION_CACHE_TTL` seconds per replica) and the person's read access
(cached `DECISION_TTL`, then asked again with the installation's token; no access any more ends their sessions).
A `github_app_authorization` revoked event ends all of a person's sessions (web/events/github_app_authorization.py).
Whatever ends sessions or tokens in the database tells every replica (NOTIFY on `db.access.CHANNEL`, at commit),
and each drops what it cached of them (`AccessControl.listen`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import html
import json
import logging
import secrets
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import aiohttp
import cachetools
from aiohttp import web
from gidgethub import BadRequest, GitHubException

from ghapp import db
from ghapp.config import Settings, parse_duration
from ghapp.core.access import (
    DECISION_TTL,
    RESERVED_PREFIX,
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_PATH,
    SESSION_TTL,
    SIGN_IN_HANDOFF,
    TOKEN_HEADER,
    USER_HEADER,
    DecisionCache,
    Facts,
    PreviewTarget,
    Verdict,
    cookie_value,
    effective_access,
    from_another_preview,
    original_request,
    presented_token,
    preview_target,
    session_cookie,
    verdict,
    wants_page,
    without_cookie,
)
from ghapp.core.contract import Access
from ghapp.core.gateway import environment_name_of
from ghapp.core.model import Environment
from ghapp.db import access as store
from ghapp.gateway.activity import Activity
from ghapp.github.client import USER_AGENT, GitHubApp
from ghapp.web import auth, keys

if TYPE_CHECKING:
    import asyncpg

    from ghapp.web.metrics import Metrics

log = logging.getLogger(__name__)

SIGN_IN_PATH = "/gateway/sign-in"
CALLBACK_PATH = "/gateway/callback"
AUTH_PATH = "/gateway/auth"
SIGN_IN_COOKIE = "ghapp_sign_in"  # on ghapp's own host, path /gateway/: the sign-in's state and return URL
# On https: `__Host-` (path /), which only ghapp's own host can set. Without the prefix, any host of the same
# registrable domain (a preview's page, with `domain=example.com`) could plant its own state: a login CSRF.
SECURE_SIGN_IN_COOKIE = f"__Host-{SIGN_IN_COOKIE}"
SIGN_IN_WINDOW = 10 * 60  # seconds to come back from GitHub
TICKET_TTL = 60
SESSION_CACHE_TTL = 10.0  # a revoked session or token still works this long on other replicas
READ_PERMISSIONS = frozenset({"admin", "maintain", "write", "triage", "read"})
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
_UNKNOWN: Any = object()  # not in a cache (None is a cached "no such session or token")
GITHUB_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    login: str = ""  # the signed-in person let through; empty for a token or a public preview


class AccessControl:
    """Everything the guard needs, one per process: settings, the pool, an HTTP session for GitHub's OAuth and REST
    calls, the App (to ask again whether a person can still read a repository; None offline: they sign in again),
    and the caches."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        github: GitHubApp | None = None,
        metrics: Metrics | None = None,
        cache_ttl: float = SESSION_CACHE_TTL,
        decision_ttl: float = DECISION_TTL,
        activity: Activity | None = None,
    ) -> None:
        self.settings, self.pool, self.session, self.github, self.metrics = settings, pool, session, github, metrics
        # requests let through by `/gateway/auth` (a Kubernetes Gateway carries them): they keep a preview awake
        self.activity = activity or Activity()
        self.decisions = DecisionCache(time.monotonic, decision_ttl)
        self._sessions: cachetools.TTLCache = cachetools.TTLCache(maxsize=50_000, ttl=cache_ttl)
        self._tokens: cachetools.TTLCache = cachetools.TTLCache(maxsize=10_000, ttl=cache_ttl)
        self._environments: cachetools.TTLCache = cachetools.TTLCache(maxsize=10_000, ttl=cache_ttl)
        self._forgotten = 0  # how often something was ended: a lookup begun before then is not cached

    @property
    def https(self) -> bool:
        return self.settings.base_url.startswith("https://")

    @property
    def sign_in_cookie(self) -> tuple[str, str]:
        """The sign-in cookie's name and path."""
        return (SECURE_SIGN_IN_COOKIE, "/") if self.https else (SIGN_IN_COOKIE, "/gateway/")

    # the decision

    async def decide(self, env: Environment, host: str, https: bool, headers) -> Decision:
        """The verdict on one request to `env`'s preview at `host`, from its token header or session cookie."""
        cookie_header = headers.get("Cookie", "")
        access = effective_access(env.access, self.settings.default_access)
        facts = Facts(access, self.settings.sign_in_configured)
        login = ""
        if access is Access.REPOSITORY:
            if (token := presented_token(headers)) is not None:
                facts = Facts(access, facts.sign_in_configured, token_valid=await self._token_opens(token, env))
            elif from_another_preview(headers.get("Origin", ""), env.name, self.settings.preview_site):
                pass  # a sibling preview's page: its requests carry the visitor's cookie but are not the visitor's
            elif (session_id := cookie_value(cookie_header, session_cookie(https))) and 20 <= len(session_id) <= 100:
                person = await self._person(session_id, host.lower())
                if person is not None and person.repo_id == env.repo_id:
                    readable = await self._readable(person, env)
                    facts = Facts(access, facts.sign_in_configured, session_readable=readable)
                    login = person.login
        decided, reason = verdict(facts)
        if self.metrics is not None:
            self.metrics.preview_access.labels(decided.value).inc()
        return Decision(decided, reason, login if decided is Verdict.ALLOW else "")

    async def environment(self, name: str) -> Environment | None:
        """The preview named `name` (cached like sessions: `/gateway/auth` asks for every request)."""
        env = self._environments.get(name, _UNKNOWN)
        if env is _UNKNOWN:
            async with self.pool.acquire() as conn:
                env = self._environments[name] = await store.environment_by_name(conn, name)
        return env

    async def _token_opens(self, token: str, env: Environment) -> bool:
        repository = self._tokens.get(token, _UNKNOWN)
        if repository is _UNKNOWN:
            forgotten = self._forgotten
            async with self.pool.acquire() as conn:
                repository = await store.token_repository(conn, token)
            if forgotten == self._forgotten:  # else it may be older than what was ended meanwhile: not kept
                self._tokens[token] = repository
        return repository is not None and repository.lower() == env.repository.lower()

    async def _person(self, session_id: str, host: str) -> store.Person | None:
        key = (session_id, host)
        person = self._sessions.get(key, _UNKNOWN)
        if person is _UNKNOWN:
            forgotten = self._forgotten
            async with self.pool.acquire() as conn:
                person = await store.find_session(conn, session_id, host)
            if forgotten == self._forgotten:  # else it may be older than what was ended meanwhile: not kept
                self._sessions[key] = person
        return person

    async def _readable(self, person: store.Person, env: Environment) -> bool | None:
        """Whether the person can read the repository: the cached decision, else the installation's word on their
        permission. None: it cannot be asked now (offline, GitHub failing): they sign in again."""
        known = self.decisions.get(person.user_id, env.repo_id)
        if known is not None:
            return known
        if self.github is None or env.installation_id is None:
            return None
        try:
            gh = await self.github.installation(env.installation_id, env.repo_id)
            login = urllib.parse.quote(person.login, safe="")
            data = await gh.getitem(f"/repos/{env.repository}/collaborators/{login}/permission")
            readable = data.get("permission") in READ_PERMISSIONS
        except BadRequest as e:
            if e.status_code not in (403, 404):
                log.warning("cannot check %s's access to %s: %s", person.login, env.repository, e)
                return None
            readable = False
        except (GitHubException, aiohttp.ClientError, TimeoutError) as e:
            log.warning("cannot check %s's access to %s: %s", person.login, env.repository, e)
            return None
        self.decisions.put(person.user_id, env.repo_id, readable)
        if not readable:
            await self._end(person.user_id, env.repo_id)
            log.info("%s lost read access to %s: their sessions there ended", person.login, env.repository)
        return readable

    async def _end(self, user_id: int, repo_id: int | None = None) -> None:
        async with self.pool.acquire() as conn:
            await store.end_sessions(conn, user_id, repo_id)  # every replica hears of it (`listen`)
        self.forget_person(user_id, repo_id)

    # what the database ended (a revoked authorization or token, lost access), whichever replica ended it

    async def listen(self, database_url: str) -> None:
        """Until cancelled: LISTEN on the access channel, so a session, decision or token ended through any replica
        stops working here at once, not when this replica's cache expires. After each (re)connection everything
        cached is dropped: what was ended meanwhile was not heard."""
        await db.listen(database_url, store.CHANNEL, self._notified, on_connect=self.forget_all)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        match payload.split():
            case ["tokens"]:
                self.forget_tokens()
            case ["user", user] if user.isdigit():
                self.forget_person(int(user))
            case ["user", user, repo] if user.isdigit() and repo.isdigit():
                self.forget_person(int(user), int(repo))
            case _:
                log.warning("unknown access notice %r: forgetting everything cached", payload[:100])
                self.forget_all()

    def forget_person(self, user_id: int, repo_id: int | None = None) -> None:
        """A person's cached sessions and decisions: all of them, or those for one repository's previews."""
        self._forgotten += 1
        for key, person in list(self._sessions.items()):
            if person is not None and person.user_id == user_id and repo_id in (None, person.repo_id):
                self._sessions.pop(key, None)
        self.decisions.forget(user_id, repo_id)

    def forget_tokens(self) -> None:
        self._forgotten += 1
        self._tokens.clear()

    def forget_all(self) -> None:
        self._forgotten += 1
        self._sessions.clear()
        self._tokens.clear()
        self.decisions.clear()

    def sign_in_url(self, target_url: str) -> str:
        return f"{self.settings.base_url}{SIGN_IN_PATH}?{urllib.parse.urlencode({'to': target_url})}"

    def count_sign_in(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.preview_sign_ins.labels(outcome).inc()


ACCESS = web.AppKey("access", AccessControl)


def _scheme(request: web.Request) -> str:
    return "https" if request.secure or request.app[ACCESS].https else "http"


# the guard (the gateway runs it before proxying to a preview)


async def check_access(request: web.Request, env: Environment) -> web.StreamResponse | None:
    """None: the request may go to the preview. Otherwise the answer to send instead: a redirect to sign in, 401
    for a script without credentials, 403, 503, or the end of a sign-in (`/_ghapp/session`). The caller must
    forward the request with `forwarded_headers` (ghapp's cookie and token never reach the preview's code)."""
    control = request.app[ACCESS]
    if request.path == SESSION_PATH:
        return await start_session(request)
    if request.path == SIGN_IN_HANDOFF:
        return await preview_sign_in(request)
    decision = await control.decide(env, request.host, _scheme(request) == "https", request.headers)
    decided, reason = decision.verdict, decision.reason
    if decided is Verdict.ALLOW:
        return None
    target = f"{_scheme(request)}://{request.host}{request.path_qs}"
    if decided is Verdict.SIGN_IN:
        if wants_page(request.method, request.headers.get("Accept", "")):
            return _redirect(control.sign_in_url(target))
        return web.json_response(
            {"error": reason, "sign_in": control.sign_in_url(target), "token_header": TOKEN_HEADER},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="ghapp preview"'},
        )
    status = 403 if decided is Verdict.DENY else 503
    if wants_page(request.method, request.headers.get("Accept", "")):
        return _page(status, "No access to this preview" if status == 403 else "Sign-in unavailable", reason)
    return web.json_response({"error": reason}, status=status)


def forwarded_headers(headers) -> list[tuple[str, str]]:
    """The request's headers as the preview may see them: without ghapp's session cookie and automation token, and
    without a visitor's claim to be a signed-in person (`X-Ghapp-User`)."""
    kept: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in (TOKEN_HEADER.lower(), USER_HEADER.lower()):
            continue
        if lower == "authorization" and presented_token({"Authorization": value}) is not None:
            continue
        if lower == "cookie":
            value = without_cookie(value, SESSION_COOKIE, SECURE_SESSION_COOKIE)
            if not value:
                continue
        kept.append((name, value))
    return kept


# "Sign in with GitHub" (on ghapp's main app)


async def sign_in(request: web.Request) -> web.StreamResponse:
    """`GET /gateway/sign-in?to=<preview URL>` (`rd=` as ingress-nginx's auth-signin sends it): to GitHub."""
    control = request.app[ACCESS]
    settings = control.settings
    target = preview_target(
        request.query.get("to") or request.query.get("rd", ""), settings.preview_site, https_only=control.https
    )
    if target is None:
        return _page(400, "Not a preview address", f"Sign-in only returns to previews under {settings.gateway_domain}.")
    if not settings.sign_in_configured:
        return _page(503, "Sign-in unavailable", "This ghapp has no GitHub OAuth credentials (GITHUB_CLIENT_ID).")
    state = secrets.token_urlsafe(32)
    query = {
        "client_id": settings.client_id,
        "redirect_uri": f"{settings.base_url}{CALLBACK_PATH}",
        "state": state,
        "allow_signup": "false",
    }
    response = _redirect(f"{settings.github_web_url}/login/oauth/authorize?{urllib.parse.urlencode(query)}")
    packed = base64.urlsafe_b64encode(json.dumps([state, target.url]).encode()).decode()
    name, path = control.sign_in_cookie
    response.set_cookie(
        name,
        packed,
        max_age=SIGN_IN_WINDOW,
        path=path,
        httponly=True,
        samesite="Lax",  # GitHub's redirect back is a top-level GET from another site
        secure=control.https,
    )
    control.count_sign_in("started")
    return response


def _unpack(cookie: str) -> tuple[str, str] | None:
    try:
        state, url = json.loads(base64.urlsafe_b64decode(cookie.encode()))
    except (ValueError, TypeError, binascii.Error):
        return None
    return (state, url) if isinstance(state, str) and isinstance(url, str) else None


async def callback(request: web.Request) -> web.StreamResponse:
    """`GET /gateway/callback?code&state`: GitHub sends the browser back here; on to the preview with a ticket."""
    control = request.app[ACCESS]
    settings = control.settings
    cookie, path = control.sign_in_cookie
    started = _unpack(request.cookies.get(cookie, ""))
    state = request.query.get("state", "")
    if started is None or not state or not auth.same_secret(started[0], state):
        control.count_sign_in("bad_state")
        return _page(
            400, "Sign-in expired", "This sign-in was not started here, or too long ago. Open the preview again."
        )
    target = preview_target(started[1], settings.preview_site, https_only=control.https)
    if target is None or not settings.sign_in_configured:
        return _page(400, "Not a preview address", "Open the preview again.")
    if "error" in request.query or not request.query.get("code"):
        control.count_sign_in("cancelled")
        return _page(403, "Sign-in cancelled", "GitHub did not sign you in. Open the preview again to retry.")
    async with control.pool.acquire() as conn:
        env = await store.environment_by_name(conn, target.name)
    if env is None:
        return _page(404, "No such preview", f"There is no preview named {target.name}.")
    try:
        token = await _exchange(control, request.query["code"])
        user = await _github_get(control, "/user", token)
        readable = await _can_read(control, env.repository, token)
    except SignInFailed as e:
        control.count_sign_in("github_error")
        return _page(502, "GitHub sign-in failed", str(e))
    user_id, login = user.get("id"), user.get("login")
    if not isinstance(user_id, int) or not isinstance(login, str):
        return _page(502, "GitHub sign-in failed", "GitHub did not say who you are.")
    control.decisions.put(user_id, env.repo_id, readable)
    if not readable:
        control.count_sign_in("denied")
        log.info("%s signed in but cannot read %s", login, env.repository)
        response: web.StreamResponse = _page(
            403, "No access to this preview", f"{login} cannot read {env.repository}, whose pull request this is."
        )
    else:
        ticket = secrets.token_urlsafe(32)
        person = store.Person(target.host, env.repo_id, user_id, login, target.path)
        async with control.pool.acquire() as conn:
            await store.create_ticket(conn, ticket, person, TICKET_TTL)
        control.count_sign_in("allowed")
        response = _redirect(target.at(f"{SESSION_PATH}?{urllib.parse.urlencode({'ticket': ticket})}"))
    response.del_cookie(cookie, path=path, httponly=True, samesite="Lax", secure=control.https)
    return response


class SignInFailed(Exception):
    """GitHub refused or failed a step of the sign-in; the message is for the person."""


async def _exchange(control: AccessControl, code: str) -> str:
    settings = control.settings
    form = {
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
        "code": code,
        "redirect_uri": f"{settings.base_url}{CALLBACK_PATH}",
    }
    try:
        async with control.session.post(
            f"{settings.github_web_url}/login/oauth/access_token",
            data=form,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=GITHUB_TIMEOUT,
        ) as resp:
            data = await resp.json(content_type=None) if resp.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise SignInFailed(f"GitHub could not be reached ({type(e).__name__}); try again.") from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        reason = data.get("error", "no token") if isinstance(data, dict) else "no token"
        raise SignInFailed(f"GitHub did not accept the sign-in ({reason}). Open the preview again.")
    return token


async def _github_get(control: AccessControl, path: str, token: str) -> dict:
    status, data = await _github_call(control, path, token)
    if status != 200 or not isinstance(data, dict):
        raise SignInFailed(f"GitHub answered {status} to {path}; try again.")
    return data


async def _can_read(control: AccessControl, repository: str, token: str) -> bool:
    """The person's token can read the repository (200); GitHub answers 404 when it cannot (or the App is not
    installed there)."""
    status, _data = await _github_call(control, f"/repos/{repository}", token)
    if status in (403, 404):
        return False
    if status != 200:
        raise SignInFailed(f"GitHub answered {status} when asked about {repository}; try again.")
    return True


async def _github_call(control: AccessControl, path: str, token: str) -> tuple[int, object]:
    try:
        async with control.session.get(
            f"{control.settings.github_api_url}{path}",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "User-Agent": USER_AGENT,
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=GITHUB_TIMEOUT,
        ) as resp:
            return resp.status, await resp.json(content_type=None) if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise SignInFailed(f"GitHub could not be reached ({type(e).__name__}); try again.") from None


async def start_session(request: web.Request) -> web.StreamResponse:
    """`<preview host>/_ghapp/session?ticket=...`: the ticket (once, this host only) becomes the session cookie."""
    control = request.app[ACCESS]
    ticket = request.query.get("ticket", "")
    host = request.host.lower()
    person = None
    if 20 <= len(ticket) <= 100:
        async with control.pool.acquire() as conn:
            person = await store.redeem_ticket(conn, ticket, host)
            if person is not None:
                session_id = secrets.token_urlsafe(32)
                await store.create_session(conn, session_id, person, SESSION_TTL)
    if person is None:
        return _page(
            400, "Sign-in expired", "This sign-in link was already used, is too old, or is for another preview."
        )
    response = _redirect(person.path if person.path.startswith("/") else "/", 303)
    https = _scheme(request) == "https"
    response.set_cookie(
        session_cookie(https),
        session_id,
        max_age=SESSION_TTL,
        path="/",  # no Domain: the cookie stays on this preview's host, never its parent domain
        httponly=True,
        samesite="Lax",
        secure=https,
    )
    return response


# the decision for a Kubernetes Gateway (HTTPRoute ExternalAuth) or ingress-nginx (auth-url)


async def external_auth(request: web.Request) -> web.StreamResponse:
    """`GET /gateway/auth[/<original path>]`: 200 allow (with `X-Ghapp-User`, the signed-in login or empty); 401 no
    credentials; 403 no read access, a wrong token, or not a preview host; 503 sign-in not configured. Never a
    redirect: NGINX's auth_request (ingress-nginx, NGINX Gateway Fabric) turns one into a 500. ingress-nginx sends
    the browser to its auth-signin (`/_ghapp/signin` on the preview host); a proxy that shows ghapp's answer
    (Envoy) shows a browser a 401 page that goes on to the sign-in."""
    control = request.app[ACCESS]
    scheme = "https" if control.https else request.headers.get("X-Forwarded-Proto", request.scheme).lower()
    site = control.settings.preview_site
    original = original_request(request.headers, request.host, site, scheme)
    env = None
    if original is not None and (name := environment_name_of(original[1], site)):
        env = await control.environment(name)
    if original is None or env is None:
        return web.json_response({"error": "not a preview host"}, status=403)
    scheme, host = original
    decision = await control.decide(env, host, scheme == "https", request.headers)
    if decision.verdict is Verdict.ALLOW:
        control.activity.touch(env.id)  # the request goes on to the preview: it is in use (batched, like the gateway)
        return web.Response(status=200, text="ok", headers={USER_HEADER: decision.login})
    if decision.verdict is Verdict.SIGN_IN:
        path = request.path_qs.removeprefix(AUTH_PATH)  # Gateway API appends the visitor's path
        target = control.sign_in_url(f"{scheme}://{host}{path if path.startswith('/') else '/'}")
        method = request.headers.get("X-Forwarded-Method", request.method).upper()
        if wants_page(method, request.headers.get("Accept", "")):
            return _page(401, "Sign in to see this preview", decision.reason, link=target, refresh=True)
        return web.json_response({"error": decision.reason, "sign_in": target}, status=401)
    status = 403 if decision.verdict is Verdict.DENY else 503
    return web.json_response({"error": decision.reason}, status=status)


async def preview_sign_in(request: web.Request) -> web.StreamResponse:
    """`<preview host>/_ghapp/signin[?rd=<URL on this host>]`: on to ghapp's sign-in, returning to that URL (or the
    preview's front page). ingress-nginx's auth-signin points here."""
    control = request.app[ACCESS]
    scheme = _scheme(request)
    target = preview_target(request.query.get("rd", ""), control.settings.preview_site, https_only=control.https)
    if target is None or target.host != request.host.lower():
        return _redirect(control.sign_in_url(f"{scheme}://{request.host}/"))
    return _redirect(control.sign_in_url(target.url))


# automation tokens


async def create_access_token(
    conn: asyncpg.Connection, repository: str, description: str = "", ttl_seconds: float | None = None
) -> tuple[str, store.AccessToken]:
    """A new token for the previews of `repository`; the token itself is shown once and stored only hashed."""
    token = f"ghpa_{secrets.token_urlsafe(32)}"
    return token, await store.create_token(conn, token, repository, description, ttl_seconds)


def token_json(token: store.AccessToken) -> dict:
    return {
        "id": token.id,
        "repository": token.repository,
        "description": token.description,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def valid_repository(text: object) -> bool:
    if not isinstance(text, str) or len(text) > 200 or text.count("/") != 1:
        return False
    return all(part and all(c.isascii() and (c.isalnum() or c in "-_.") for c in part) for part in text.split("/"))


def _refused(request: web.Request) -> web.Response | None:
    refusal = auth.check_api(request)
    if refusal is None:
        return None
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
    return web.json_response({"error": refusal.reason}, status=refusal.status, headers=headers)


async def api_create_token(request: web.Request) -> web.Response:
    if refused := _refused(request):
        return refused
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body must be JSON"}, status=400)
    if not isinstance(body, dict) or not valid_repository(body.get("repository")):
        return web.json_response({"error": 'send {"repository": "owner/name"}'}, status=400)
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 200 or "\x00" in description:
        return web.json_response({"error": "description: text of at most 200 characters"}, status=400)
    ttl = None
    if body.get("expires_in") is not None:
        try:
            ttl = parse_duration(str(body["expires_in"]))
        except ValueError as e:
            return web.json_response({"error": f"expires_in: {e}"}, status=400)
    async with request.app[keys.POOL].acquire() as conn:
        token, made = await create_access_token(conn, body["repository"], description, ttl)
    return web.json_response({**token_json(made), "token": token}, status=201)


async def api_list_tokens(request: web.Request) -> web.Response:
    if refused := _refused(request):
        return refused
    async with request.app[keys.POOL].acquire() as conn:
        found = await store.list_tokens(conn, request.query.get("repository") or None)
    return web.json_response({"tokens": [token_json(t) for t in found]})


async def api_revoke_token(request: web.Request) -> web.Response:
    if refused := _refused(request):
        return refused
    async with request.app[keys.POOL].acquire() as conn:
        revoked = await store.revoke_token(conn, int(request.match_info["id"]))
    if revoked is None:
        return web.json_response({"error": "no such token"}, status=404)
    if ACCESS in request.app:
        request.app[ACCESS].forget_tokens()  # here at once; the other replicas when the NOTIFY reaches them
    return web.json_response(token_json(revoked))


# pages and wiring


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location, "Cache-Control": "no-store"})


def _page(status: int, title: str, text: str, *, link: str | None = None, refresh: bool = False) -> web.Response:
    go = f'<meta http-equiv="refresh" content="0; url={html.escape(link)}">' if link and refresh else ""
    more = f'<p><a href="{html.escape(link)}">Sign in with GitHub</a></p>' if link else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f"{go}<title>{html.escape(title)}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{more}</body></html>"
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


def setup(app: web.Application) -> None:
    """ghapp's main app: the sign-in pages, the external decision, the session start for hosts routed here (a
    Kubernetes Gateway sends `<preview>/_ghapp/` to ghapp), and the token API. Call it last in create_app: the
    AccessControl is made once the pool (and, online, the App client) exist."""
    app.router.add_get(SIGN_IN_PATH, sign_in)
    app.router.add_get(CALLBACK_PATH, callback)
    app.router.add_get(SESSION_PATH, start_session)
    app.router.add_get(SIGN_IN_HANDOFF, preview_sign_in)
    app.router.add_route("GET", AUTH_PATH, external_auth)
    app.router.add_route("GET", AUTH_PATH + "/{tail:.*}", external_auth)
    app.router.add_post("/api/access-tokens", api_create_token)
    app.router.add_get("/api/access-tokens", api_list_tokens)
    app.router.add_delete("/api/access-tokens/{id:\\d{1,18}}", api_revoke_token)
    app.cleanup_ctx.append(_lifetime)


async def _lifetime(app: web.Application):
    gateway = app.get(keys.GATEWAY)  # ghapp's own gateway records activity; /gateway/auth adds to its batch
    activity = gateway.activity if gateway is not None else Activity()
    async with aiohttp.ClientSession() as session:
        control = app[ACCESS] = AccessControl(
            app[keys.SETTINGS], app[keys.POOL], session, app.get(keys.GITHUB), app.get(keys.METRICS), activity=activity
        )
        tasks = [asyncio.create_task(control.listen(app[keys.DATABASE_URL]))]
        if gateway is None:
            tasks.append(asyncio.create_task(_record_activity(app, activity)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()  # the activity's last batch is written as it ends
            await asyncio.gather(*tasks, return_exceptions=True)


async def _record_activity(app: web.Application, activity: Activity) -> None:
    await app[keys.READY].wait()
    await activity.run(app[keys.POOL])


__all__ = [
    "ACCESS",
    "RESERVED_PREFIX",
    "AccessControl",
    "PreviewTarget",
    "check_access",
    "create_access_token",
    "forwarded_headers",
    "setup",
]
