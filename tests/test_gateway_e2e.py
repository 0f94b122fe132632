"""The preview gateway as people and scripts meet it, all parts together (issue 11, "How it is checked"): real
`ghapp serve` processes (their own gateway ports) as the GitHub App against the strict fake GitHub, real Terraform on
terraform/local running a preview that echoes what it receives (tests/preview_echo.py), a real PostgreSQL, and
headless Chromium (Debian's, driven by Playwright) for what a browser sees.

- Sign in with GitHub through the fake GitHub's OAuth pages to a preview whose `.github/preview.yml` says
  `access: repository`; a person who cannot read the repository is refused; the preview never sees ghapp's cookie.
- A sleeping preview (`/preview sleep`, or the API) woken by a browser ("Waking up PR #2…", then the preview) and by
  scripts (held until it answers; 503 with Retry-After past GHAPP_WAKE_TIMEOUT); two replicas wake it once.
- Access tokens for automation: one repository's token opens its previews, another's does not, a revoked one stops.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex

import aiohttp
import pytest
from playwright.async_api import Page, expect

from ghapp.core.access import SESSION_COOKIE, TOKEN_HEADER
from ghapp.db import access as store
from ghapp.db import sleep
from ghapp.gateway.access import SESSION_CACHE_TTL
from ghapp.gateway.wake import MARKER, RETRY_AFTER
from tests.support import ROOT, ServeProcess, deliver, environment, ready, runs, wait_for
from tests.test_browser import browser, console_errors, page  # noqa: F401 - fixtures
from tests.test_github_app import INSTALLATION, REPO, REPO_ID, SHA, comment_on_pr

ADMIN = "kX2v9QpLw7RzT4mNb8YcJ1hE"
ECHO = f"exec python3 {shlex.quote(str(ROOT / 'tests' / 'preview_echo.py'))}"
REPOSITORY_ONLY = "version: 1\naccess: repository\n"
SLEEP_AFTER = 30.0  # GHAPP_SLEEP_AFTER where the idle sleeper is under test: it looks every 1.5 s


@pytest.fixture
def github(fake_github):
    """REPO is private: alice can read it, mallory cannot; PR #2's head commit holds `.github/preview.yml`."""
    fake_github.add_repo(REPO, REPO_ID, private=True)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.add_commit(REPO, {".github/preview.yml": REPOSITORY_ONLY, "README.md": "hello\n"}, sha=SHA)
    fake_github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="Codertocat")
    fake_github.set_permission(REPO, "Codertocat", "admin")
    fake_github.set_permission(REPO, "alice", "read")
    fake_github.add_user("mallory")
    return fake_github


@pytest.fixture
def start(serve, github):
    """`ghapp serve` as the GitHub App with "Sign in with GitHub" configured and the operator's default access
    `public` (so `repository` comes from the repository's own file), on terraform/local with the echoing preview;
    waits until it is ready."""

    async def start(**extra: str) -> ServeProcess:
        proc = serve(
            GITHUB_APP_ID=str(github.app_id),
            GITHUB_PRIVATE_KEY=github.private_key_pem,
            GITHUB_API_URL=github.base_url,
            GITHUB_CLIENT_ID=github.client_id,
            GITHUB_CLIENT_SECRET=github.client_secret,
            GHAPP_ACCESS="public",
            GHAPP_ADMIN_TOKEN=ADMIN,
            TF_VAR_command=ECHO,
            **extra,
        )
        await wait_for(lambda: ready(proc), what="ghapp serve ready")
        return proc

    return start


def gateway_port(proc: ServeProcess) -> int:
    return int(proc.env["GHAPP_GATEWAY_PORT"])


def preview_url(proc: ServeProcess, env: dict, path: str = "/") -> str:
    """What people open: the preview's host on this replica's gateway (Chromium resolves *.localhost itself)."""
    return f"http://{env['name']}.localhost:{gateway_port(proc)}{path}"


def through_gateway(
    session: aiohttp.ClientSession, proc: ServeProcess, env: dict, path: str = "/", method: str = "GET", **kwargs
):
    """A request to the preview's host, sent to the replica's gateway address (this machine's resolver need not
    know *.localhost)."""
    headers = {"Host": f"{env['name']}.localhost:{gateway_port(proc)}", **kwargs.pop("headers", {})}
    url = f"http://127.0.0.1:{gateway_port(proc)}{path}"
    return session.request(method, url, headers=headers, allow_redirects=False, **kwargs)


async def deployed(proc: ServeProcess, deliveries, db) -> dict:
    """PR #2 opened and its preview active (the environment's row)."""
    env_id = (await deliver(proc, deliveries, deliveries.pull_request("opened")))["environment_id"]
    return await settled(proc, db, env_id, "active", "the preview active")


async def settled(proc: ServeProcess, db, env_id: int, status: str, what: str) -> dict:
    """The environment once converged with `status`; on a timeout the failure shows the end of the replica's log."""
    try:
        return await wait_for(lambda: _converged(db, env_id, status), timeout=90, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- the end of ghapp serve's log:\n{proc.log()[-4000:]}") from None


async def _converged(db, env_id: int, status: str) -> dict | None:
    env = await environment(db, env_id)
    return env if env["status"] == status and env["observed_generation"] == env["generation"] else None


async def put_to_sleep(proc: ServeProcess, db, env: dict) -> dict:
    """Asleep by the API (the dashboard's and `/preview sleep`'s write): its process stopped."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{proc.url}/api/environments/{env['id']}/sleep", headers={"Authorization": f"Bearer {ADMIN}"}) as r,
    ):
        assert r.status == 202, await r.text()
    asleep = await settled(proc, db, env["id"], "sleeping", "asleep")
    assert not await _answers(asleep["preview_url"]), "the preview's process still answers while asleep"
    return asleep


async def _answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def applies(db, env_id: int) -> int:
    return len([r for r in await runs(db, env_id) if r["action"] == "apply"])


async def _is(answer, status: int) -> bool:
    return await answer() == status


def seen_by_preview(text: str) -> dict:
    return json.loads(text)


# 1. Sign in with GitHub, in a browser


async def test_a_reader_signs_in_and_sees_the_preview_which_never_sees_ghapps_cookie(
    start, deliveries, db, github, browser
):
    proc = await start()
    env = await deployed(proc, deliveries, db)
    assert env["access"] == "repository", "from .github/preview.yml; the operator's default is public"

    async with aiohttp.ClientSession() as s, through_gateway(s, proc, env, headers={"Accept": "application/json"}) as r:
        assert r.status == 401 and "sign_in" in await r.json(), "a script without credentials sees nothing"

    context = await browser.new_context()
    page = await context.new_page()
    await context.add_cookies([{"name": "theme", "value": "dark", "url": preview_url(proc, env)}])
    github.sign_in_as("alice")
    await page.goto(preview_url(proc, env, "/cart?item=2"))
    # the preview host -> ghapp's sign-in -> GitHub's authorize page -> ghapp's callback -> /_ghapp/session -> back
    await page.wait_for_url(preview_url(proc, env, "/cart?item=2"))
    await expect(page.get_by_role("heading")).to_have_text(f"Echo from {REPO} #2")
    assert len(github.calls("web/oauth-authorize")) == 1
    seen = seen_by_preview(await page.locator("#seen").text_content() or "")
    assert seen["path"] == "/cart?item=2"
    cookies = [value for name, value in seen["headers"] if name.lower() == "cookie"]
    assert cookies == ["theme=dark"], "the preview sees its own cookies, never ghapp's session"
    forwarded = {name.lower(): value for name, value in seen["headers"]}
    assert forwarded["x-forwarded-host"] == f"{env['name']}.localhost:{gateway_port(proc)}"
    session = next(c for c in await context.cookies() if c["name"] == SESSION_COOKIE)
    assert session["domain"] == f"{env['name']}.localhost" and session["httpOnly"] and session["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == "theme=dark", "the session cookie is HttpOnly"
    assert await db.fetchval("SELECT login FROM access_sessions") == "alice"
    # signed in: another page of the preview needs no new trip to GitHub
    await page.goto(preview_url(proc, env, "/other"))
    await expect(page.get_by_role("heading")).to_have_text(f"Echo from {REPO} #2")
    assert len(github.calls("web/oauth-authorize")) == 1
    await context.close()

    # alice revokes the App's authorization on GitHub: her session ends (within the replicas' short session cache)
    async def with_session() -> int:
        headers = {"Accept": "application/json", "Cookie": f"{SESSION_COOKIE}={session['value']}"}
        async with aiohttp.ClientSession() as s, through_gateway(s, proc, env, headers=headers) as r:
            return r.status

    assert await with_session() == 200
    revoked = deliveries.payload("github_app_authorization.revoked")
    revoked["sender"] = {**revoked["sender"], "login": "alice", "id": github.revoke_authorization("alice")}
    await deliver(proc, deliveries, revoked, "github_app_authorization")
    assert await with_session() == 401, "the replica that received the revocation ends her session at once"

    refused = await browser.new_context()
    page = await refused.new_page()
    github.sign_in_as("mallory")
    answer = await page.goto(preview_url(proc, env))
    assert answer is not None and answer.status == 403
    await expect(page.get_by_role("heading")).to_have_text("No access to this preview")
    await expect(page.get_by_text(f"mallory cannot read {REPO}")).to_be_visible()
    assert "Echo from" not in await page.content()
    assert not [c for c in await refused.cookies() if c["name"] == SESSION_COOKIE]
    await refused.close()


async def test_a_revocation_received_by_one_replica_ends_the_session_on_another_at_once(start, deliveries, db, github):
    """The session cache is per replica (SESSION_CACHE_TTL): what ended a session in the database must reach every
    replica's cache, not only the one GitHub happened to deliver the event to."""
    first, second = await start(), await start()
    env = await deployed(first, deliveries, db)
    alice = github.add_user("alice").id
    session_id = secrets.token_urlsafe(32)
    host = f"{env['name']}.localhost:{gateway_port(second)}"
    async with db.acquire() as conn:
        await store.create_session(conn, session_id, store.Person(host, env["repo_id"], alice, "alice"), 3600)

    async def on_second() -> int:
        headers = {"Accept": "application/json", "Cookie": f"{SESSION_COOKIE}={session_id}"}
        async with aiohttp.ClientSession() as s, through_gateway(s, second, env, headers=headers) as r:
            return r.status

    assert await on_second() == 200, "alice is signed in on the second replica's host, which now caches her session"
    revoked = deliveries.payload("github_app_authorization.revoked")
    revoked["sender"] = {**revoked["sender"], "login": "alice", "id": github.revoke_authorization("alice")}
    await deliver(first, deliveries, revoked, "github_app_authorization")
    # the NOTIFY reaches the second replica in milliseconds; its cache alone would keep her in for SESSION_CACHE_TTL
    await wait_for(lambda: _is(on_second, 401), timeout=SESSION_CACHE_TTL / 2, what="the second replica ending it")


# 2. A sleeping preview woken by a browser


async def test_a_signed_in_browser_wakes_a_sleeping_preview(start, deliveries, db, github, page: Page, console_errors):
    proc = await start()
    env = await deployed(proc, deliveries, db)
    github.sign_in_as("alice")
    await page.goto(preview_url(proc, env))
    await expect(page.get_by_role("heading")).to_have_text(f"Echo from {REPO} #2")

    await deliver(proc, deliveries, comment_on_pr(deliveries, "/preview sleep", github=github), "issue_comment")
    asleep = await settled(proc, db, env["id"], "sleeping", "asleep by the command")
    assert not await _answers(asleep["preview_url"])
    before = await applies(db, env["id"])

    answer = await page.goto(preview_url(proc, env, "/after-sleep"))
    assert answer is not None and answer.status == 503 and answer.headers[MARKER.lower()] == "waking"
    await expect(page.get_by_role("heading")).to_have_text("Waking up PR #2…")
    # the page follows the wake (its polls pass the access guard with the session) and reloads into the preview
    await expect(page.get_by_role("heading")).to_have_text(f"Echo from {REPO} #2", timeout=90_000)
    assert seen_by_preview(await page.locator("#seen").text_content() or "")["path"] == "/after-sleep"
    assert (await environment(db, env["id"]))["status"] == "active"
    assert await applies(db, env["id"]) == before + 1
    assert len(github.calls("web/oauth-authorize")) == 1, "no second sign-in"
    console_errors[:] = [e for e in console_errors if "status of 503" not in e]  # the waking page's own status


# 3. Scripts: held until awake, 503 past the limit, two replicas wake once


async def test_an_idle_preview_sleeps_and_a_script_is_held_until_it_wakes_and_answers(start, deliveries, db):
    proc = await start(GHAPP_SLEEP_AFTER=f"{SLEEP_AFTER:g}s")
    env = await deployed(proc, deliveries, db)
    await db.execute(
        """UPDATE environments SET last_activity_at = now() - interval '1 hour',
                                   last_request_at = now() - interval '1 hour' WHERE id = $1""",
        env["id"],
    )
    asleep = await settled(proc, db, env["id"], "sleeping", "put to sleep when idle")
    assert asleep["desired_sleeping"] and not await _answers(asleep["preview_url"])
    before = await applies(db, env["id"])
    token = await create_token(proc, REPO)

    async with (
        aiohttp.ClientSession() as s,
        through_gateway(s, proc, env, "/api/items?x=1", headers={TOKEN_HEADER: token, "Accept": "*/*"}) as r,
    ):
        assert r.status == 200 and MARKER not in r.headers, (await r.text(), proc.log()[-4000:])
        seen = seen_by_preview(await r.text())
    assert seen["preview"] == f"{REPO}#2" and seen["path"] == "/api/items?x=1"
    assert await applies(db, env["id"]) == before + 1
    awake = await environment(db, env["id"])
    assert (awake["status"], awake["desired_sleeping"], awake["wake_requested_at"]) == ("active", False, None)
    async with db.acquire() as conn:  # the wake counts as a request: it does not fall asleep again at once
        assert await sleep.sleep_idle(conn, SLEEP_AFTER) == []
    async with aiohttp.ClientSession() as s, s.get(f"{proc.url}/metrics") as r:
        metrics = await r.text()
    assert "ghapp_wakeups_total 1.0" in metrics and "ghapp_wake_latency_seconds_count 1.0" in metrics


async def test_past_the_wake_timeout_a_script_gets_503_with_retry_after(start, deliveries, db):
    proc = await start(GHAPP_WAKE_TIMEOUT="0.05s")
    env = await deployed(proc, deliveries, db)
    await put_to_sleep(proc, db, env)
    token, others = await create_token(proc, REPO), await create_token(proc, "Codertocat/Other")
    headers = {TOKEN_HEADER: token, "Accept": "application/json"}

    for stranger, refused in (({}, 401), ({TOKEN_HEADER: others}, 403)):  # who may not see it cannot wake it
        async with aiohttp.ClientSession() as s, through_gateway(s, proc, env, "/api", headers=stranger) as r:
            assert r.status == refused and MARKER not in r.headers
    still = await environment(db, env["id"])
    assert (still["status"], still["desired_sleeping"], still["wake_requested_at"]) == ("sleeping", True, None)

    async with aiohttp.ClientSession() as s, through_gateway(s, proc, env, "/api", headers=headers) as r:
        assert r.status == 503 and r.headers["Retry-After"] == str(RETRY_AFTER)
        assert "waking up" in (await r.json())["error"]
    await settled(proc, db, env["id"], "active", "awake all the same")
    async with aiohttp.ClientSession() as s, through_gateway(s, proc, env, "/api", headers=headers) as r:
        assert r.status == 200 and seen_by_preview(await r.text())["path"] == "/api"


async def test_two_replicas_and_many_requests_wake_a_preview_with_one_apply(start, deliveries, db):
    first, second = await start(), await start()
    assert gateway_port(first) != gateway_port(second)
    env = await deployed(first, deliveries, db)
    await put_to_sleep(first, db, env)
    before = await applies(db, env["id"])
    token = await create_token(first, REPO)

    async def request(proc: ServeProcess, i: int) -> tuple[int, str]:
        headers = {TOKEN_HEADER: token, "Accept": "application/json"}
        async with aiohttp.ClientSession() as s, through_gateway(s, proc, env, f"/n/{i}", headers=headers) as r:
            return r.status, await r.text()

    answers = await asyncio.gather(*(request((first, second)[i % 2], i) for i in range(12)))
    assert [status for status, _text in answers] == [200] * 12, (answers, first.log()[-4000:], second.log()[-4000:])
    assert sorted(seen_by_preview(text)["path"] for _status, text in answers) == sorted(f"/n/{i}" for i in range(12))
    assert await applies(db, env["id"]) == before + 1, "more than one apply woke the preview"


# 4. Access tokens for automation


async def create_token(proc: ServeProcess, repository: str) -> str:
    return (await _token_api(proc, "POST", "/api/access-tokens", json={"repository": repository}))["token"]


async def _token_api(proc: ServeProcess, method: str, path: str, **kwargs) -> dict:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{proc.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs) as r,
    ):
        assert r.status in (200, 201), await r.text()
        return await r.json()


async def test_access_tokens_open_one_repositorys_previews_until_revoked(start, deliveries, db):
    proc, replica = await start(), await start()
    env = await deployed(proc, deliveries, db)
    made = await _token_api(proc, "POST", "/api/access-tokens", json={"repository": REPO, "description": "e2e"})
    other = await create_token(proc, "Codertocat/Other")

    async def fetch(via: ServeProcess = proc, **headers: str) -> tuple[int, dict]:
        async with (
            aiohttp.ClientSession() as s,
            through_gateway(s, via, env, "/checkout", headers={"Accept": "application/json", **headers}) as r,
        ):
            return r.status, await r.json()

    async def replica_refuses() -> bool:
        return (await fetch(replica, **{TOKEN_HEADER: made["token"]}))[0] == 403

    status, seen = await fetch(**{TOKEN_HEADER: made["token"], "Authorization": "Basic cHJldmlldzpvd24="})
    assert status == 200 and seen["path"] == "/checkout"
    names = {name.lower(): value for name, value in seen["headers"]}
    assert TOKEN_HEADER.lower() not in names, "the token never reaches the preview's code"
    assert names["authorization"] == "Basic cHJldmlldzpvd24=", "the preview's own Authorization passes"
    status, seen = await fetch(Authorization=f"Bearer {made['token']}")
    assert status == 200 and "authorization" not in {name.lower() for name, _value in seen["headers"]}

    status, body = await fetch(**{TOKEN_HEADER: other})
    assert status == 403 and "another repository" in body["error"]
    status, body = await fetch()
    assert status == 401

    assert (await fetch(replica, **{TOKEN_HEADER: made["token"]}))[0] == 200, "any replica's gateway"

    await _token_api(proc, "DELETE", f"/api/access-tokens/{made['id']}")
    status, body = await fetch(**{TOKEN_HEADER: made["token"]})
    assert status == 403 and "revoked" in body["error"], "at once on the replica that revoked it"
    # at once on the other replica too (NOTIFY), not when its cache (SESSION_CACHE_TTL) lets go
    await wait_for(replica_refuses, timeout=SESSION_CACHE_TTL / 2, what="the other replica refusing the revoked token")
