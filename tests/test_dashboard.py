"""The dashboard over HTTP (real server and PostgreSQL, rows written as the workers would) and its pure parts:
formatting, links, session signing; escaping of everything people type into GitHub."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re

import pytest

from ghapp.core.contract import environment_name
from ghapp.web import auth, keys
from ghapp.web.dashboard import display
from tests.support import fake_sha

TOKEN = "s3cret-admin-token"
HOSTILE = '<script>alert("x")</script>'


async def seed(
    db,
    count: int = 1,
    *,
    repository: str = "acme/web",
    status: str = "active",
    desired: str = "present",
    title: str = "Add a feature",
    head_ref: str = "feature",
    author: str = "alice",
    preview_url: str | None = "auto",
    pr_url: str | None = None,
    first_pr: int = 1,
) -> list[int]:
    """Environments as the workers leave them, written directly (fast enough for thousands)."""
    rows = []
    for i in range(count):
        pr = first_pr + i
        sha = fake_sha(f"{repository}{pr}")
        rows.append(
            (
                int(fake_sha(repository)[:8], 16),
                repository,
                pr,
                head_ref,
                author,
                title,
                pr_url if pr_url is not None else f"https://github.com/{repository}/pull/{pr}",
                desired,
                sha,
                status,
                sha if status == "active" else None,
                (f"http://pr-{pr}.preview.test/" if preview_url == "auto" else preview_url)
                if status == "active"
                else None,
            )
        )
    ids = await db.fetchval(
        """WITH new AS (
             INSERT INTO environments (repo_id, repository, pr_number, head_ref, author, title, pr_url, desired,
                                       desired_sha, head_sha, status, deployed_sha, preview_url, expires_at,
                                       generation, observed_generation)
             SELECT r.repo_id, r.repository, r.pr, r.head_ref, r.author, r.title, r.pr_url, r.desired, r.sha, r.sha,
                    r.status, r.deployed, r.preview, now() + interval '3 days', 1,
                    CASE WHEN r.status IN ('active', 'destroyed') THEN 1 ELSE 0 END
             FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
                  AS r(repo_id, repository, pr, head_ref, author, title, pr_url, desired, sha, status, deployed,
                       preview)
             RETURNING id, repository, pr_number)
           SELECT array_agg(id ORDER BY id) FROM new""",
        *map(list, zip(*rows, strict=True)),
    )
    for env_id, row in zip(ids, rows, strict=True):
        await db.execute(
            "UPDATE environments SET name = $2 WHERE id = $1", env_id, environment_name(env_id, row[1], row[2])
        )
    return ids


async def add_run(db, env_id: int, lines: list[str], state: str = "succeeded", action: str = "apply") -> int:
    run_id = await db.fetchval(
        """INSERT INTO runs (environment_id, action, sha, generation, owner, state, finished_at)
           VALUES ($1, $2, $3, 1, 'test', $4, CASE WHEN $4 = 'running' THEN NULL ELSE now() END) RETURNING id""",
        env_id,
        action,
        fake_sha(env_id),
        state,
    )
    await db.executemany(
        "INSERT INTO run_logs (run_id, seq, line) VALUES ($1, $2, $3)",
        [(run_id, i, line) for i, line in enumerate(lines)],
    )
    return run_id


async def sign_in(client, token: str = TOKEN) -> str:
    """Sign in through the form; returns the CSRF token the pages carry."""
    resp = await client.post("/login", data={"token": token, "next": "/"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await (await client.get("/")).text()
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


# --- pure ------------------------------------------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def test_relative_times():
    assert (
        display.span(5) == "5s"
        and display.span(61) == "1m"
        and display.span(7200) == "2h"
        and display.span(3 * 86400) == "3d"
    )
    assert display.age(NOW - dt.timedelta(hours=5, minutes=59), NOW) == "5h"
    assert display.expiry(NOW + dt.timedelta(days=2, hours=1), NOW) == "in 2d"
    assert display.expiry(NOW - dt.timedelta(minutes=3), NOW) == "expired 3m ago"
    assert display.expiry(None, NOW) == "never"
    assert display.duration(NOW - dt.timedelta(seconds=42), None, NOW) == "42s"


def test_links_only_to_http_and_commits_on_the_prs_github():
    assert display.safe_url("javascript:alert(1)") is None and display.safe_url(" JaVaScRiPt:x") is None
    assert display.safe_url("data:text/html,x") is None and display.safe_url("") is None
    assert display.safe_url("https://pr-1.preview.example.com/") == "https://pr-1.preview.example.com/"
    sha = fake_sha(1)
    assert (
        display.commit_url("acme/web", "https://github.com/acme/web/pull/3", sha)
        == f"https://github.com/acme/web/commit/{sha}"
    )
    assert (
        display.commit_url("acme/web", "https://ghe.example.com/acme/web/pull/3", sha)
        == f"https://ghe.example.com/acme/web/commit/{sha}"
    )
    assert display.commit_url("acme/web", "", sha) == f"https://github.com/acme/web/commit/{sha}"
    assert display.commit_url("acme/web", "javascript:x/a/b/pull/1", sha) == f"https://github.com/acme/web/commit/{sha}"
    assert display.commit_url("acme/web", "", "not-a-sha") is None and display.commit_url("acme/web", "", None) is None


def test_redirects_stay_on_the_site():
    assert display.local_path("/environments/3?run=4") == "/environments/3?run=4"
    for target in ("https://evil.example", "//evil.example/x", "/\\evil.example", "", None, "javascript:x"):
        assert display.local_path(target) == "/"


def test_throttle_lets_a_few_failures_pass_then_backs_off_doubling_per_client():
    now = [1000.0]
    throttle = auth.Throttle(free=3, base=1.0, cap=8.0, size=2, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("a")
        assert throttle.retry_after("a") == 0
    waits = []
    for _ in range(5):
        throttle.failed("a")
        waits.append(throttle.retry_after("a"))
        now[0] += waits[-1]
    assert waits == [1, 2, 4, 8, 8]  # doubling, capped
    assert throttle.retry_after("b") == 0  # per client
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0
    for client in ("x", "y", "z"):  # bounded memory: the oldest client is forgotten
        throttle.failed(client)
    assert len(throttle._clients) == 2


def test_session_key_id_changes_with_the_admin_token():
    assert auth.key_id(TOKEN) == auth.key_id(TOKEN) and auth.key_id(TOKEN) != auth.key_id(TOKEN + "x")
    assert TOKEN not in auth.key_id(TOKEN)


# --- the list --------------------------------------------------------------------------------------------------------


async def test_list_shows_every_field_linked_and_escaped(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db, title=HOSTILE, head_ref=HOSTILE, author="<b>mallory</b>")
    await seed(db, repository="acme/api", status="failed", first_pr=5)
    await seed(db, status="active", preview_url="javascript:alert(1)", first_pr=9)

    resp = await client.get("/")
    page = await resp.text()
    assert resp.status == 200
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "&lt;b&gt;mallory&lt;/b&gt;" in page
    assert 'href="javascript:' not in page
    sha = fake_sha("acme/web1")
    assert '<a href="https://github.com/acme/web/pull/1">#1</a>' in page
    assert f'<a class="sha" href="https://github.com/acme/web/commit/{sha}">{sha[:7]}</a>' in page
    shown = f"http://pr-1-web-{env_id}.localhost:8081/"  # the gateway's URL, not the module's own address
    assert f'<a href="{shown}">{shown}</a>' in page and "http://pr-1.preview.test/" not in page
    assert f'<a href="/environments/{env_id}">pr-1-web-{env_id}</a>' in page
    # status in words and colour; age and expiry
    assert re.search(r'class="status s-active"><span aria-hidden="true">●</span> active<', page)
    assert re.search(r'class="status s-failed"><span aria-hidden="true">✕</span> failed<', page)
    assert "in 2d" in page and ">0s</time>" in page
    # a visitor is offered no action
    assert "Force destroy" not in page and "Redeploy" not in page and 'id="act"' not in page
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")


async def test_filters_and_pages(start_app, db):
    client = await start_app(workers=False)
    web = await seed(db, 5)
    api = await seed(db, 3, repository="acme/api", status="failed", first_pr=10)

    page = await (await client.get("/", params={"status": "failed"})).text()
    assert all(f'data-id="{i}"' in page for i in api) and not any(f'data-id="{i}"' in page for i in web)
    page = await (await client.get("/", params={"repository": "acme/web"})).text()
    assert all(f'data-id="{i}"' in page for i in web) and not any(f'data-id="{i}"' in page for i in api)
    assert "<option selected>acme/web</option>" in page and "<option>acme/api</option>" in page
    assert (await client.get("/", params={"status": "nonsense"})).status == 400

    # newest first, a page at a time
    page = await (await client.get("/", params={"limit": "4"})).text()
    shown = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page)]
    assert shown == sorted(web + api, reverse=True)[:4]
    older = re.search(r'<a href="([^"]+)" rel="next">', page).group(1).replace("&amp;", "&")
    page = await (await client.get(older)).text()
    shown = [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page)]
    assert shown == sorted(web + api, reverse=True)[4:8]
    assert "← Newest" in page


async def test_list_of_a_thousand_is_one_page_with_every_row(start_app, db):
    client = await start_app(workers=False)
    await seed(db, 1000)
    page = await (await client.get("/", params={"limit": "1000"})).text()
    assert page.count("<tr data-id=") == 1000
    assert len(page) < 1_000_000
    default = await (await client.get("/")).text()
    assert default.count("<tr data-id=") == 200 and 'rel="next"' in default


# --- one environment -------------------------------------------------------------------------------------------------


async def test_detail_page_shows_runs_and_the_stored_log_after_a_restart(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db, title=HOSTILE)
    first = await add_run(db, env_id, ["first run line"], state="failed")
    await db.execute("UPDATE runs SET error = $2 WHERE id = $1", first, "exit status 1 <oops>")
    second = await add_run(db, env_id, ["Terraform will perform", HOSTILE, "Apply complete!"])
    await client.close()

    client = await start_app(workers=False)  # a new app over the same database: the logs are still there
    resp = await client.get(f"/environments/{env_id}")
    page = await resp.text()
    assert resp.status == 200
    assert f"Log of run #{second}" in page and "Apply complete!" in page and "first run line" not in page
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    assert "exit status 1 &lt;oops&gt;" in page
    assert 'data-live="false"' in page
    page = await (await client.get(f"/environments/{env_id}", params={"run": str(first)})).text()
    assert f"Log of run #{first}" in page and "first run line" in page
    assert (await client.get("/environments/999999")).status == 404


async def test_a_running_run_is_marked_live(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db, status="creating")
    run_id = await add_run(db, env_id, ["line 0", "line 1"], state="running")
    page = await (await client.get(f"/environments/{env_id}")).text()
    assert f'data-run="{run_id}" data-after="1" data-live="true"' in page
    assert "new lines appear as they arrive" in page


# --- signing in and acting -------------------------------------------------------------------------------------------


async def test_sign_in_sets_a_hardened_cookie_and_sign_out_clears_it(start_app):
    client = await start_app(workers=False, admin_token=TOKEN)
    resp = await client.post("/login", data={"token": "wrong", "next": "/"}, allow_redirects=False)
    assert resp.status == 403 and "not the admin token" in await resp.text()

    resp = await client.post("/login", data={"token": TOKEN, "next": "https://evil.example/"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{auth.COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Signed in as operator" in await (await client.get("/")).text()

    page = await (await client.get("/")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert "Sign in" in await (await client.get("/")).text()


async def test_the_cookie_is_a_random_id_stored_only_hashed(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    resp = await client.post("/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False)
    cookie = resp.cookies[auth.COOKIE].value
    rows = await db.fetch("SELECT id_hash, expires_at > now() + interval '11 hours' AS long FROM sessions")
    assert [(bytes(r["id_hash"]), r["long"]) for r in rows] == [(hashlib.sha256(cookie.encode()).digest(), True)]
    assert TOKEN not in cookie and len(cookie) >= 40


async def test_sign_out_ends_the_session_on_the_server(start_app, db):
    """Finding 4: the cookie of a signed-out session must be worth nothing (it was a stateless cookie valid 12 h)."""
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    csrf = await sign_in(client)
    stolen = client.session.cookie_jar.filter_cookies(client.make_url("/"))[auth.COOKIE].value
    resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303

    client.session.cookie_jar.update_cookies({auth.COOKIE: stolen})
    assert "Signed in as operator" not in await (await client.get("/")).text()
    resp = await client.post(f"/environments/{env_id}/destroy", data={"csrf_token": csrf, "confirmed": "yes"})
    assert resp.status == 401
    assert await db.fetchval("SELECT desired FROM environments WHERE id = $1", env_id) == "present"
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_sign_out_needs_the_csrf_token(start_app):
    """Finding 4: another site must not be able to sign the operator out (logout had no CSRF token)."""
    client = await start_app(workers=False, admin_token=TOKEN)
    await sign_in(client)
    resp = await client.post("/logout", allow_redirects=False)
    assert resp.status == 403
    assert "Signed in as operator" in await (await client.get("/")).text()


async def test_failed_sign_ins_are_answered_429_with_a_growing_retry_after(start_app):
    """Finding 4: 300 wrong tokens in 0.22 s were all checked; now a client is locked out after a few."""
    client = await start_app(workers=False, admin_token=TOKEN)
    now = [1000.0]
    client.app[keys.THROTTLE].clock = lambda: now[0]
    for _ in range(5):
        assert (await client.post("/login", data={"token": "wrong"})).status == 403
    resp = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)  # even the right one waits
    assert resp.status == 429 and resp.headers["Retry-After"] == "1" and "try again" in await resp.text()
    now[0] += 1
    assert (await client.post("/login", data={"token": "wrong"})).status == 403
    resp = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    now[0] += 2
    assert (await client.post("/login", data={"token": TOKEN}, allow_redirects=False)).status == 303


async def test_bodies_over_64_kb_are_refused_on_every_route_but_webhooks(start_app):
    """Finding 8: every route read up to 25 MB before any check."""
    client = await start_app(workers=False, admin_token=TOKEN)
    resp = await client.post("/login", data={"token": "x" * 70_000})
    assert resp.status == 413


async def test_a_trickled_body_is_cut_off_with_408(start_app):
    """Finding 8: a body sent slowly held the connection (94 s at 1 byte / 5 s); GHAPP_BODY_TIMEOUT bounds it."""
    client = await start_app(workers=False, admin_token=TOKEN, body_timeout=0.2)
    status = await trickle(client, "/login", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 408


async def trickle(client, path: str, headers: dict[str, str]) -> int:
    """POST a body that announces 1000 bytes and sends 10, then nothing (the connection stays open): the status."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": "1000", "Host": "x"}.items())
    writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + b"token=abcd")
    await writer.drain()
    try:
        async with asyncio.timeout(30):  # a guard against hanging forever, far above the app's limit
            line = await reader.readline()
    finally:
        writer.close()
    return int(line.split()[1])


async def test_without_an_admin_token_sign_in_and_writes_are_refused(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db)
    resp = await client.get("/login")
    assert resp.status == 403 and "GHAPP_ADMIN_TOKEN" in await resp.text() and 'name="token"' not in await resp.text()
    assert (await client.post("/login", data={"token": ""})).status == 403
    assert (await client.post(f"/environments/{env_id}/destroy", data={"confirmed": "yes"})).status == 403
    assert (await client.get("/")).status == 200


async def test_operator_destroys_after_confirming(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    csrf = await sign_in(client)
    page = await (await client.get("/")).text()
    assert f'formaction="/environments/{env_id}/destroy"' in page and "Force destroy" in page

    # without the confirmation (no JavaScript): a page asks first, nothing changes yet
    resp = await client.post(f"/environments/{env_id}/destroy", data={"csrf_token": csrf, "next": "/"})
    assert resp.status == 200 and "Force destroy" in await resp.text() and 'value="yes"' in await resp.text()
    assert await db.fetchval("SELECT desired FROM environments WHERE id = $1", env_id) == "present"

    resp = await client.post(
        f"/environments/{env_id}/destroy",
        data={"csrf_token": csrf, "confirmed": "yes", "next": "/?status=active"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/?status=active"
    env = await db.fetchrow("SELECT desired, status, generation FROM environments WHERE id = $1", env_id)
    assert (env["desired"], env["status"], env["generation"]) == ("absent", "pending", 2)


async def test_redeploy_bumps_the_generation_at_the_same_commit(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    (gone,) = await seed(db, status="destroyed", desired="absent", first_pr=7)
    csrf = await sign_in(client)
    before = await db.fetchrow("SELECT desired_sha, generation FROM environments WHERE id = $1", env_id)
    resp = await client.post(
        f"/environments/{env_id}/redeploy", data={"csrf_token": csrf, "confirmed": "yes"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == f"/environments/{env_id}"
    after = await db.fetchrow("SELECT desired_sha, generation, status FROM environments WHERE id = $1", env_id)
    assert after["desired_sha"] == before["desired_sha"] and after["generation"] == before["generation"] + 1
    assert after["status"] == "pending"

    page = await (await client.get("/")).text()
    assert f"/environments/{gone}/redeploy" not in page and f"/environments/{gone}/destroy" not in page
    resp = await client.post(f"/environments/{gone}/redeploy", data={"csrf_token": csrf, "confirmed": "yes"})
    assert resp.status == 409


async def test_forged_posts_are_refused(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    url = f"/environments/{env_id}/destroy"
    resp = await client.post(url, data={"confirmed": "yes"})
    assert resp.status == 401 and "Sign in" in await resp.text()
    assert (await client.get(url)).status == 401

    csrf = await sign_in(client)
    assert (await client.post(url, data={"confirmed": "yes"})).status == 403
    wrong = csrf[:-1] + ("1" if csrf[-1] == "0" else "0")
    assert (await client.post(url, data={"confirmed": "yes", "csrf_token": wrong})).status == 403
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({auth.COOKIE: "1999999999.forged.0000"})
    assert (await client.post(url, data={"confirmed": "yes", "csrf_token": csrf})).status == 401
    assert await db.fetchval("SELECT desired FROM environments WHERE id = $1", env_id) == "present"


@pytest.mark.parametrize("path", ["/static/dashboard.js", "/static/dashboard.css"])
async def test_static_files_are_served(start_app, path):
    client = await start_app(workers=False)
    resp = await client.get(path)
    assert resp.status == 200 and len(await resp.read()) > 500
