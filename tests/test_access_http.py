"""Who may see a preview, over HTTP: ghapp's main app (sign-in, callback, /gateway/auth, the token API, webhooks)
and a small preview gateway that mounts the guard in front of a trivial handler, against the strict fake GitHub
(its OAuth pages, `ghu_` tokens, collaborator permissions) and a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import html
import json
import urllib.parse

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ghapp.core.access import SESSION_COOKIE, TOKEN_HEADER, wants_page
from ghapp.core.gateway import environment_name_of
from ghapp.db import access as store
from ghapp.gateway.access import ACCESS, AccessControl, check_access, create_access_token, forwarded_headers
from ghapp.github.client import GitHubApp
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.support import Deliveries, free_port, wait_for

REPO = "Codertocat/Hello-World"  # the repository of the real pull_request deliveries
REPO_ID = 186853002
INSTALLATION = 1
ADMIN = "kX2v9QpLw7RzT4mNb8YcJ1hE"


@pytest.fixture
def github(fake_github):
    fake_github.add_repo(REPO, REPO_ID, private=True)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.set_permission(REPO, "alice", "read")
    fake_github.add_user("mallory")  # can read nothing of REPO (private)
    return fake_github


@dataclasses.dataclass
class Stack:
    main: TestClient  # ghapp's main app; both clients keep no cookies: each test sends what it means to
    gateway: TestClient  # the preview gateway (a trivial proxy stand-in with the guard)
    github: object
    control: AccessControl  # the gateway's
    pool: object
    env_name: str
    env_id: int

    @property
    def domain(self) -> str:
        return f"localhost:{self.gateway.port}"

    @property
    def host(self) -> str:
        return f"{self.env_name}.{self.domain}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

    async def preview(self, path: str = "/", *, host: str | None = None, **headers: str) -> aiohttp.ClientResponse:
        """A request to the preview's host (sent to the gateway's address with that Host)."""
        sent = {"Host": host or self.host, **{k.replace("_", "-"): v for k, v in headers.items()}}
        return await self.gateway.get(path, headers=sent, allow_redirects=False)


def preview_app(site_of) -> web.Application:
    """The gateway stand-in: find the preview by its host, run the guard, answer what the preview would see."""

    async def handle(request: web.Request) -> web.StreamResponse:
        control = request.app[ACCESS]
        name = environment_name_of(request.host, site_of())
        env = None
        if name is not None:
            async with control.pool.acquire() as conn:
                env = await store.environment_by_name(conn, name)
        if env is None:
            raise web.HTTPNotFound(text="no such preview")
        if (answer := await check_access(request, env)) is not None:
            return answer
        seen = dict(forwarded_headers(request.headers))
        if wants_page(request.method, request.headers.get("Accept", "")):
            page = f"<title>Preview {env.name}</title><h1>Hello from {env.name}</h1>"
            return web.Response(text=page, content_type="text/html")
        return web.json_response({"preview": env.name, "path": request.path_qs, "headers": seen})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def stack(settings, aiohttp_client, github, deliveries, db):
    port, gateway_port = free_port(), free_port()
    changed = settings.replace(
        app_id=str(github.app_id),
        private_key=github.private_key_pem,
        github_api_url=github.base_url,
        client_id=github.client_id,
        client_secret=github.client_secret,
        admin_token=ADMIN,
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        gateway_port=gateway_port,
    )
    main_app = create_app(changed, workers=False)
    main = await aiohttp_client(main_app, server_kwargs={"port": port}, cookie_jar=aiohttp.DummyCookieJar())
    await wait_for(lambda: _ready(main_app), what="migrations")
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    resp = await main.post("/webhooks", data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    env_id = (await resp.json())["environment_id"]
    name = await db.fetchval("SELECT name FROM environments WHERE id = $1", env_id)

    async with aiohttp.ClientSession() as session:
        app = GitHubApp(session, str(github.app_id), github.private_key_pem, github.base_url)
        control = AccessControl(changed, main_app[keys.POOL], session, app, cache_ttl=0.2, decision_ttl=0.5)
        gateway_app = preview_app(lambda: changed.preview_site)
        gateway_app[ACCESS] = control
        gateway = await aiohttp_client(
            gateway_app, server_kwargs={"port": gateway_port}, cookie_jar=aiohttp.DummyCookieJar()
        )
        yield Stack(main, gateway, github, control, db, name, env_id)


async def _ready(app):
    return app[keys.READY].is_set()


def set_cookie(resp: aiohttp.ClientResponse, name: str) -> str | None:
    for header in resp.headers.getall("Set-Cookie", []):
        if header.startswith(f"{name}="):
            return header
    return None


def cookie_pair(header: str) -> str:
    return header.split(";", 1)[0]


async def sign_in(stack: Stack, login: str, path: str = "/cart?item=2") -> aiohttp.ClientResponse:
    """The whole browser round trip, by hand: preview → sign-in → GitHub → callback; returns the callback's answer."""
    stack.github.sign_in_as(login)
    first = await stack.preview(path, Accept="text/html")
    assert first.status == 302
    parts = urllib.parse.urlsplit(first.headers["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == str(stack.main.make_url("/gateway/sign-in"))
    assert urllib.parse.parse_qs(parts.query) == {"to": [stack.url(path)]}
    resp = await stack.main.get(f"{parts.path}?{parts.query}", allow_redirects=False)
    assert resp.status == 302, await resp.text()
    started = set_cookie(resp, "ghapp_sign_in")
    assert started and "HttpOnly" in started and "SameSite=Lax" in started and "Path=/gateway/" in started
    authorize = urllib.parse.urlsplit(resp.headers["Location"])
    query = dict(urllib.parse.parse_qsl(authorize.query))
    assert authorize.path == "/login/oauth/authorize" and query["client_id"] == stack.github.client_id
    assert query["redirect_uri"] == str(stack.main.make_url("/gateway/callback"))
    async with aiohttp.ClientSession() as browser:
        async with browser.get(resp.headers["Location"], allow_redirects=False) as github_answer:
            assert github_answer.status == 302
            back = urllib.parse.urlsplit(github_answer.headers["Location"])
    assert back.path == "/gateway/callback"
    return await stack.main.get(
        f"/gateway/callback?{back.query}", headers={"Cookie": cookie_pair(started)}, allow_redirects=False
    )


async def signed_in(stack: Stack, login: str, path: str = "/cart?item=2") -> str:
    """Signs `login` in and returns the preview host's session cookie (`name=value`)."""
    callback = await sign_in(stack, login, path)
    assert callback.status == 302, await callback.text()
    ticket_url = urllib.parse.urlsplit(callback.headers["Location"])
    assert f"{ticket_url.scheme}://{ticket_url.netloc}" == stack.url("")
    assert ticket_url.path == "/_ghapp/session"
    resp = await stack.preview(f"{ticket_url.path}?{ticket_url.query}")
    assert resp.status == 303 and resp.headers["Location"] == path
    cookie = set_cookie(resp, SESSION_COOKIE)
    assert cookie is not None
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain") for a in attributes), "the cookie stays on the preview's own host"
    return cookie_pair(cookie)


async def test_a_reader_signs_in_and_sees_the_preview_which_never_sees_the_session(stack, db):
    refused = await stack.preview("/", Accept="application/json")
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await refused.json())["sign_in"].startswith(str(stack.main.make_url("/gateway/sign-in")))

    cookie = await signed_in(stack, "alice")
    resp = await stack.preview("/cart?item=2", Cookie=f"theme=dark; {cookie}")
    assert resp.status == 200, await resp.text()
    seen = await resp.json()
    assert seen["path"] == "/cart?item=2"
    assert seen["headers"]["Cookie"] == "theme=dark", "ghapp's session cookie must not reach the preview's code"
    row = await db.fetchrow("SELECT login, host, repo_id FROM access_sessions")
    assert dict(row) == {"login": "alice", "host": stack.host, "repo_id": REPO_ID}
    # the cookie is worth nothing on another preview host
    other = await stack.preview("/", host=f"pr-9-other-99.{stack.domain}", Cookie=cookie)
    assert other.status == 404
    # nor is it for the same session id on another host of an existing preview
    await db.execute("UPDATE environments SET name = 'pr-2-renamed-1' WHERE id = $1", stack.env_id)
    moved = await stack.preview("/", host=f"pr-2-renamed-1.{stack.domain}", Cookie=cookie, Accept="application/json")
    assert moved.status == 401


async def test_someone_who_cannot_read_the_repository_is_refused(stack, db):
    callback = await sign_in(stack, "mallory")
    assert callback.status == 403
    assert "mallory cannot read Codertocat/Hello-World" in await callback.text()
    assert await db.fetchval("SELECT count(*) FROM access_tickets") == 0
    assert await db.fetchval("SELECT count(*) FROM access_sessions") == 0
    # GitHub was asked with mallory's own token
    user_calls = [c for c in stack.github.calls("repos/get") if c.user == "mallory"]
    assert len(user_calls) == 1 and user_calls[0].status == 404


async def test_state_must_match_the_browser_that_started_the_sign_in(stack):
    stack.github.sign_in_as("alice")
    resp = await stack.main.get("/gateway/sign-in", params={"to": stack.url("/")}, allow_redirects=False)
    authorize = resp.headers["Location"]
    async with aiohttp.ClientSession() as browser, browser.get(authorize, allow_redirects=False) as answer:
        back = urllib.parse.urlsplit(answer.headers["Location"])
    # another browser (no cookie), or a forged state with this browser's cookie
    assert (await stack.main.get(f"/gateway/callback?{back.query}", allow_redirects=False)).status == 400
    forged = back.query.replace("state=", "state=x")
    cookie = cookie_pair(set_cookie(resp, "ghapp_sign_in"))
    resp = await stack.main.get(f"/gateway/callback?{forged}", headers={"Cookie": cookie}, allow_redirects=False)
    assert resp.status == 400 and "Sign-in expired" in await resp.text()


@pytest.mark.parametrize(
    "to", ["https://evil.example/", "http://pr-2-x-1.localhost.evil.example/", "http://127.0.0.1:1/", "/relative"]
)
async def test_sign_in_returns_only_to_previews_of_this_domain(stack, to):
    resp = await stack.main.get("/gateway/sign-in", params={"to": to}, allow_redirects=False)
    assert resp.status == 400 and "Location" not in resp.headers


async def test_a_ticket_works_once_and_only_on_its_host(stack, db, deliveries):
    callback = await sign_in(stack, "alice")
    ticket_path = urllib.parse.urlsplit(callback.headers["Location"])
    path = f"{ticket_path.path}?{ticket_path.query}"
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened", number=7))
    other_id = (await (await stack.main.post("/webhooks", data=body, headers=headers)).json())["environment_id"]
    other_host = f"{await db.fetchval('SELECT name FROM environments WHERE id = $1', other_id)}.{stack.domain}"
    wrong_host = await stack.preview(path, host=other_host)
    assert wrong_host.status == 400 and set_cookie(wrong_host, SESSION_COOKIE) is None
    # the attempt on the wrong host used the ticket up: it cannot be replayed on the right one either
    replayed = await stack.preview(path)
    assert replayed.status == 400 and set_cookie(replayed, SESSION_COOKIE) is None


async def test_revoking_the_apps_authorization_ends_every_session(stack, deliveries, db):
    cookie = await signed_in(stack, "alice")
    assert (await stack.preview("/", Cookie=cookie)).status == 200
    payload = Deliveries.payload("github_app_authorization.revoked")
    payload["sender"]["id"] = stack.github.revoke_authorization("alice")
    payload["sender"]["login"] = "alice"
    body, headers = deliveries.signed("github_app_authorization", payload)
    resp = await stack.main.post("/webhooks", data=body, headers=headers)
    assert resp.status == 202 and (await resp.json())["sessions_ended"] == 1
    assert await db.fetchval("SELECT count(*) FROM access_sessions") == 0

    async def refused():
        return (await stack.preview("/", Cookie=cookie, Accept="application/json")).status == 401

    await wait_for(refused, what="the revoked session to be refused")


async def test_lost_read_access_ends_the_session(stack, db):
    cookie = await signed_in(stack, "alice")
    assert (await stack.preview("/", Cookie=cookie)).status == 200
    stack.github.set_permission(REPO, "alice", "none")

    async def refused():
        return (await stack.preview("/", Cookie=cookie)).status in (401, 403)

    await wait_for(refused, what="alice's lost access to be noticed")
    assert await db.fetchval("SELECT count(*) FROM access_sessions WHERE login = 'alice'") == 0
    checks = stack.github.calls("repos/get-collaborator-permission-level")
    assert checks and checks[-1].installation_id == INSTALLATION


async def test_a_public_preview_needs_nothing(stack, db):
    await db.execute("UPDATE environments SET access = 'public' WHERE id = $1", stack.env_id)
    resp = await stack.preview("/", Accept="application/json")
    assert resp.status == 200


async def test_repository_access_without_oauth_credentials_fails_closed(stack):
    stack.control.settings = stack.control.settings.replace(client_id=None, client_secret=None, access=None)
    # the operator's default is then public ...
    assert (await stack.preview("/", Accept="application/json")).status == 200
    # ... but a repository that asks for `repository` access is never shown to anyone
    await stack.pool.execute("UPDATE environments SET access = 'repository' WHERE id = $1", stack.env_id)
    resp = await stack.preview("/", Accept="application/json")
    assert resp.status == 503 and "not configured" in (await resp.json())["error"]


async def test_automation_token_opens_one_repository_until_revoked(stack, db):
    no_admin = await stack.main.post("/api/access-tokens", json={"repository": REPO})
    assert no_admin.status == 401
    admin = {"Authorization": f"Bearer {ADMIN}"}
    bad = await stack.main.post("/api/access-tokens", json={"repository": "not a repo"}, headers=admin)
    assert bad.status == 400
    made = await stack.main.post("/api/access-tokens", json={"repository": REPO, "description": "e2e"}, headers=admin)
    assert made.status == 201, await made.text()
    created = await made.json()
    token = created["token"]
    assert token.startswith("ghpa_") and created["repository"] == REPO
    stored = await db.fetchval("SELECT token_hash FROM access_tokens")
    assert token.encode() not in stored and len(stored) == 32, "only the SHA-256 is stored"
    other = await stack.main.post("/api/access-tokens", json={"repository": "acme/other"}, headers=admin)
    other_token = (await other.json())["token"]

    through = await stack.preview("/", X_Ghapp_Access_Token=token, Accept="application/json")
    assert through.status == 200
    assert "X-Ghapp-Access-Token" not in (await through.json())["headers"]
    bearer = await stack.preview("/", Authorization=f"Bearer {token}", Accept="application/json")
    assert bearer.status == 200 and "Authorization" not in (await bearer.json())["headers"]
    wrong = await stack.preview("/", X_Ghapp_Access_Token=other_token, Accept="application/json")
    assert wrong.status == 403
    unknown = await stack.preview("/", X_Ghapp_Access_Token="ghpa_" + "x" * 43, Accept="application/json")
    assert unknown.status == 403

    listed = await (await stack.main.get("/api/access-tokens", headers=admin)).json()
    assert [t["repository"] for t in listed["tokens"]] == [REPO, "acme/other"]
    assert "token" not in json.dumps(listed).replace('"tokens"', "")
    revoked = await stack.main.delete(f"/api/access-tokens/{created['id']}", headers=admin)
    assert revoked.status == 200 and (await revoked.json())["revoked_at"]
    assert (await stack.main.delete("/api/access-tokens/999999", headers=admin)).status == 404

    async def refused():
        return (await stack.preview("/", X_Ghapp_Access_Token=token)).status == 403

    await wait_for(refused, what="the revoked token to be refused")


async def test_external_auth_for_a_kubernetes_gateway_or_ingress_nginx(stack, db, deliveries):
    host = stack.host
    # Gateway API ExternalAuth (NGINX Gateway Fabric, Envoy Gateway): the visitor's Host, their path appended.
    # Never a redirect (NGINX turns one into a 500): a browser gets a 401 page that goes on to the sign-in.
    browser = await stack.main.get(
        "/gateway/auth/cart?item=2", headers={"Host": host, "Accept": "text/html"}, allow_redirects=False
    )
    assert browser.status == 401
    page = await browser.text()
    sign_in_url = f"{stack.main.make_url('/gateway/sign-in')}?to=" + urllib.parse.quote(stack.url("/cart?item=2"), "")
    assert f'http-equiv="refresh" content="0; url={html.escape(sign_in_url)}"' in page
    script = await stack.main.get("/gateway/auth", headers={"Host": host})
    assert script.status == 401 and (await script.json())["sign_in"].startswith(str(stack.main.make_url("/")))
    # ingress-nginx: the subrequest is addressed to ghapp and carries X-Original-URL
    nginx = await stack.main.get("/gateway/auth", headers={"X-Original-URL": f"http://{host}/cart"})
    assert nginx.status == 401
    cookie = await signed_in(stack, "alice")
    allowed = await stack.main.get("/gateway/auth", headers={"X-Original-URL": f"http://{host}/", "Cookie": cookie})
    assert allowed.status == 200 and allowed.headers["X-Ghapp-User"] == "alice"
    kept = await stack.main.get("/gateway/auth/x", headers={"Host": host, "Cookie": cookie})
    assert kept.status == 200 and kept.headers["X-Ghapp-User"] == "alice"
    elsewhere = await stack.main.get(
        "/gateway/auth", headers={"X-Original-URL": "http://pr-1-x-5.localhost.evil/", "Cookie": cookie}
    )
    assert elsewhere.status == 403
    # the preview's name on another port is another server: no decision for it (core/gateway's one host rule)
    other_port = await stack.main.get(
        "/gateway/auth", headers={"Host": f"{stack.env_name}.localhost:1", "Cookie": cookie}
    )
    assert other_port.status == 403

    # a visitor's own X-Original-URL cannot move the decision to a preview they may see
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened", number=7))
    other_id = (await (await stack.main.post("/webhooks", data=body, headers=headers)).json())["environment_id"]
    other_host = f"{await db.fetchval('SELECT name FROM environments WHERE id = $1', other_id)}.{stack.domain}"
    smuggled = await stack.main.get(
        "/gateway/auth", headers={"Host": other_host, "X-Original-URL": f"http://{host}/", "Cookie": cookie}
    )
    assert smuggled.status == 401

    await db.execute("UPDATE environments SET access = 'public' WHERE id = $1", stack.env_id)

    async def public():  # the preview's row is cached for up to 10 s
        resp = await stack.main.get("/gateway/auth", headers={"Host": host})
        return resp if resp.status == 200 else None

    assert (await wait_for(public, what="the preview to be public")).headers["X-Ghapp-User"] == ""


async def test_sign_in_can_start_on_the_preview_host(stack):
    """ingress-nginx's auth-signin: `<preview host>/_ghapp/signin?rd=<the URL asked for>`."""
    deep = await stack.preview("/_ghapp/signin?" + urllib.parse.urlencode({"rd": stack.url("/deep?x=1")}))
    assert deep.status == 302
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(deep.headers["Location"]).query) == {
        "to": [stack.url("/deep?x=1")]
    }
    elsewhere = await stack.preview("/_ghapp/signin?" + urllib.parse.urlencode({"rd": "https://evil.example/"}))
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(elsewhere.headers["Location"]).query) == {"to": [stack.url("/")]}
    on_main = await stack.main.get("/_ghapp/signin", headers={"Host": stack.host}, allow_redirects=False)
    assert on_main.status == 302 and "/gateway/sign-in?to=" in on_main.headers["Location"]


async def test_metrics_count_decisions_and_sign_ins(stack):
    await signed_in(stack, "alice")
    await sign_in(stack, "mallory")
    text = await (await stack.main.get("/metrics")).text()
    assert 'ghapp_preview_sign_ins_total{outcome="allowed"} 1.0' in text
    assert 'ghapp_preview_sign_ins_total{outcome="denied"} 1.0' in text
    assert 'ghapp_preview_sign_ins_total{outcome="started"} 2.0' in text


async def test_cli_creates_lists_and_revokes_tokens_that_the_guard_honours(stack, database_url, db):
    from tests.test_cli import _run_in_thread

    env = {"DATABASE_URL": database_url}
    made = await _run_in_thread("access-token", "create", REPO, "--description", "e2e in CI", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ghpa_") and "X-Ghapp-Access-Token" in made.stderr
    assert (await stack.preview("/", X_Ghapp_Access_Token=token)).status == 200
    listing = await _run_in_thread("access-token", "list", env=env)
    assert REPO in listing.stdout and "active" in listing.stdout and "e2e in CI" in listing.stdout
    assert token not in listing.stdout
    token_id = await db.fetchval("SELECT id FROM access_tokens")
    revoked = await _run_in_thread("access-token", "revoke", str(token_id), env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in (await _run_in_thread("access-token", "list", env=env)).stdout

    async def refused():
        return (await stack.preview("/", X_Ghapp_Access_Token=token)).status == 403

    await wait_for(refused, what="the revoked token to be refused")
    bad = await _run_in_thread("access-token", "create", "not-a-repo", env=env)
    assert bad.returncode == 2 and "OWNER/REPO" in bad.stderr
    missing = await _run_in_thread("access-token", "revoke", "424242", env=env)
    assert missing.returncode == 1


async def test_on_https_the_session_cookie_is_secure_and_host_only(stack):
    stack.control.settings = stack.control.settings.replace(public_url="https://ghapp.example.com")
    ticket = "t" * 43
    async with stack.pool.acquire() as conn:
        await store.create_ticket(conn, ticket, store.Person(stack.host, REPO_ID, 4242, "alice", "/"), 60)
    resp = await stack.preview(f"/_ghapp/session?ticket={ticket}")
    assert resp.status == 303
    cookie = set_cookie(resp, "__Host-ghapp_preview")
    assert cookie is not None and set_cookie(resp, SESSION_COOKIE) is None
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "secure" in attributes and "path=/" in attributes and not any(a.startswith("domain") for a in attributes)
    session_id = cookie_pair(cookie).split("=", 1)[1]
    allowed = await stack.preview("/", Cookie=f"__Host-ghapp_preview={session_id}")
    assert allowed.status == 200
    # the name without the prefix (which any host of the domain could set) is not looked at on https
    planted = await stack.preview("/", Cookie=f"ghapp_preview={session_id}", Accept="application/json")
    assert planted.status == 401


async def test_a_malformed_revocation_is_refused_and_changes_nothing(stack, deliveries, db):
    await signed_in(stack, "alice")
    payload = Deliveries.payload("github_app_authorization.revoked")
    payload["sender"]["id"] = "alice"
    body, headers = deliveries.signed("github_app_authorization", payload)
    resp = await stack.main.post("/webhooks", data=body, headers=headers)
    assert resp.status == 400 and "sender.id" in (await resp.json())["error"]
    assert await db.fetchval("SELECT count(*) FROM access_sessions") == 1


async def test_an_entry_expiring_between_lookup_and_use_is_no_error(stack, db):
    """The caches hold entries for moments; one that expires right after it was filled must still answer (it raised
    KeyError, a 500, when the cache was read twice)."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    token = (await (await stack.main.post("/api/access-tokens", json={"repository": REPO}, headers=admin)).json())[
        "token"
    ]
    cookie = await signed_in(stack, "alice")
    async with stack.pool.acquire() as conn:
        env = await store.environment_by_name(conn, stack.env_name)
    control = AccessControl(stack.control.settings, stack.control.pool, stack.control.session, cache_ttl=1e-9)
    control.decisions.put(stack.github.users["alice"].id, REPO_ID, True)
    for _ in range(20):
        assert (await control.decide(env, stack.host, False, {"X-Ghapp-Access-Token": token})).verdict == "allow"
        assert (await control.decide(env, stack.host, False, {"Cookie": cookie})).login == "alice"


async def test_on_kubernetes_ghapp_itself_starts_the_session_for_a_preview_host(stack):
    """The Gateway routes `<preview>/_ghapp/` to ghapp's main port, keeping the Host."""
    ticket = "k" * 43
    async with stack.pool.acquire() as conn:
        await store.create_ticket(conn, ticket, store.Person(stack.host, REPO_ID, 4242, "alice", "/docs"), 60)
    resp = await stack.main.get(f"/_ghapp/session?ticket={ticket}", headers={"Host": stack.host}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/docs"
    session = cookie_pair(set_cookie(resp, SESSION_COOKIE))
    stack.main.app[ACCESS].decisions.put(4242, REPO_ID, True)  # as the callback leaves it
    allowed = await stack.main.get("/gateway/auth", headers={"Host": stack.host, "Cookie": session})
    assert allowed.status == 200


async def test_on_https_the_sign_in_cookie_cannot_be_planted_by_another_host_of_the_domain(stack):
    """Attacked on 2026-12-01: on https the sign-in's state cookie was a plain `ghapp_sign_in`, which any host under
    the same registrable domain (a preview's page: `document.cookie = "ghapp_sign_in=...; domain=example.com"`) can
    set for ghapp's host: with the attacker's own state and GitHub code, the victim's browser was signed in as the
    attacker (login CSRF). `__Host-` cookies can only come from ghapp's own host."""
    main = stack.main.app[ACCESS]
    main.settings = main.settings.replace(public_url="https://ghapp.example.com")
    stack.github.sign_in_as("alice")
    to = stack.url("/").replace("http://", "https://")
    resp = await stack.main.get("/gateway/sign-in", params={"to": to}, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    assert set_cookie(resp, "ghapp_sign_in") is None
    started = set_cookie(resp, "__Host-ghapp_sign_in")
    assert started is not None
    attributes = [a.strip().lower() for a in started.split(";")[1:]]
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= set(attributes)
    assert not any(a.startswith("domain") for a in attributes)
    async with aiohttp.ClientSession() as browser, browser.get(resp.headers["Location"], allow_redirects=False) as a:
        back = urllib.parse.urlsplit(a.headers["Location"]).query
    value = cookie_pair(started).split("=", 1)[1]
    # the attacker's state and code, with the cookie planted under the name without the prefix: refused
    planted = await stack.main.get(f"/gateway/callback?{back}", headers={"Cookie": f"ghapp_sign_in={value}"})
    assert planted.status == 400 and "Sign-in expired" in await planted.text()
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM access_tickets") == 0
    # the browser that started it gets on
    done = await stack.main.get(
        f"/gateway/callback?{back}", headers={"Cookie": cookie_pair(started)}, allow_redirects=False
    )
    assert done.status == 302 and done.headers["Location"].startswith(to + "_ghapp/session?ticket=")
    assert set_cookie(done, "__Host-ghapp_sign_in") is not None  # cleared


async def test_a_sibling_previews_page_cannot_use_a_visitors_session(stack):
    """Attacked on 2026-12-01: previews share a parent domain, so for browsers they are one site: a page of another
    pull request's preview, opened by a signed-in reader, could open a WebSocket to this preview (browsers apply
    no CORS to WebSockets, and SameSite=Lax lets the session cookie go along) and read it as that reader, or send
    it credentialed requests (CSRF). A request whose Origin is another preview's is not signed in."""
    cookie = await signed_in(stack, "alice")
    sibling = f"http://pr-9-other-99.{stack.domain}"
    handshake = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    handshake["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    for headers in (handshake, {"Accept": "application/json"}):
        refused = await stack.preview("/ws", Cookie=cookie, Origin=sibling, **headers)
        assert refused.status == 401, headers
    # its own pages, a navigation (no Origin) and another site (an identity provider's form_post) still are
    for origin in (stack.url("").rstrip("/"), None, "https://idp.example"):
        sent = {"Origin": origin} if origin else {}
        allowed = await stack.preview("/", Cookie=cookie, Accept="application/json", **sent)
        assert allowed.status == 200, origin


async def test_a_request_let_through_by_gateway_auth_keeps_the_preview_awake(stack, db):
    """A preview reached only through a Kubernetes Gateway: ghapp sees nothing of its traffic but the ExternalAuth
    check, which must count as use (batched, as ghapp's own gateway does), or the idle sleeper would put a preview
    in use to sleep. A refused request is no use."""
    async with db.acquire() as conn:
        token, _made = await create_access_token(conn, REPO)
    allowed = await stack.main.get("/gateway/auth/cart", headers={"Host": stack.host, TOKEN_HEADER: token})
    assert allowed.status == 200

    async def recorded():
        return await db.fetchval("SELECT last_request_at FROM environments WHERE id = $1", stack.env_id)

    await wait_for(recorded, what="the request recorded in the next batch")
    activity = stack.main.app[ACCESS].activity
    await wait_for(lambda: _flushed(activity, stack.env_id), what="nothing left to write")
    refused = await stack.main.get("/gateway/auth", headers={"Host": stack.host})
    assert refused.status == 401 and activity.last_request(stack.env_id) is None


async def _flushed(activity, env_id: int) -> bool:
    return activity.last_request(env_id) is None
