"""The JSON API (shape, pagination, filters), its writes (bearer token or session + CSRF header), and the run
log over Server-Sent Events, finished and live."""

from __future__ import annotations

import asyncio
import json

from tests.support import wait_for
from tests.test_dashboard import TOKEN, add_run, seed, sign_in

ENVIRONMENT_FIELDS = {
    "id",
    "name",
    "repository",
    "pr_number",
    "pr_url",
    "title",
    "author",
    "head_ref",
    "is_fork",
    "status",
    "desired",
    "head_sha",
    "deployed_sha",
    "preview_url",
    "preview_urls",
    "outputs",
    "config_source",
    "config_blob_sha",
    "hold",
    "hold_reason",
    "progress",
    "converged",
    "attempts",
    "last_error",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "expires_at",
}


async def test_list_has_the_documented_shape_and_pages(start_app, db):
    client = await start_app(workers=False)
    ids = await seed(db, 5) + await seed(db, 2, repository="acme/api", status="failed", first_pr=10)

    body = await (await client.get("/api/environments", params={"limit": "3"})).json()
    assert set(body) == {"environments", "next"}
    assert all(set(e) >= ENVIRONMENT_FIELDS for e in body["environments"])
    seen = [e["id"] for e in body["environments"]]
    while body["next"]:
        body = await (await client.get(body["next"])).json()
        seen += [e["id"] for e in body["environments"]]
    assert seen == sorted(ids)

    failed = await (await client.get("/api/environments", params={"status": "failed"})).json()
    assert [e["repository"] for e in failed["environments"]] == ["acme/api", "acme/api"]
    assert failed["next"] is None
    web = await (await client.get("/api/environments", params={"repository": "acme/web"})).json()
    assert len(web["environments"]) == 5
    assert (await client.get("/api/environments", params={"status": "bogus"})).status == 400
    assert (await client.get("/api/environments", params={"limit": "x"})).status == 400


async def test_detail_and_log_with_the_run(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db)
    run_id = await add_run(db, env_id, [f"line {i}" for i in range(5)])
    detail = await (await client.get(f"/api/environments/{env_id}")).json()
    assert set(detail) >= ENVIRONMENT_FIELDS
    assert [r["id"] for r in detail["runs"]] == [run_id] and detail["runs"][0]["state"] == "succeeded"

    body = await (await client.get(f"/api/runs/{run_id}/log", params={"after": "2"})).json()
    assert [x["line"] for x in body["lines"]] == ["line 3", "line 4"] and body["lines"][0]["seq"] == 3
    assert body["run"]["state"] == "succeeded" and body["run"]["environment_id"] == env_id
    assert (await client.get("/api/runs/999999/log")).status == 404
    assert (await client.get("/api/environments/999999")).status == 404


async def test_writes_need_the_bearer_token(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    url = f"/api/environments/{env_id}/destroy"

    resp = await client.post(url)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.post(url, headers={"Authorization": "Basic abc"})).status == 401
    assert (await client.post(url, headers={"Authorization": "Bearer wrong"})).status == 403
    assert (await client.post(url, headers={"Authorization": f"Bearer {TOKEN}x"})).status == 403
    assert await db.fetchval("SELECT desired FROM environments WHERE id = $1", env_id) == "present"

    resp = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 202
    body = await resp.json()
    assert body["id"] == env_id and body["desired"] == "absent" and body["status"] == "pending"
    assert (
        await client.post("/api/environments/999999/destroy", headers={"Authorization": f"Bearer {TOKEN}"})
    ).status == 404
    resp = await client.post(f"/api/environments/{env_id}/redeploy", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 409 and "deploy" in (await resp.json())["error"]


async def test_redeploy_over_the_api(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    resp = await client.post(f"/api/environments/{env_id}/redeploy", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 202
    body = await resp.json()
    assert body["desired"] == "present" and body["converged"] is False and body["status"] == "pending"


async def test_a_session_writes_with_the_csrf_header(start_app, db):
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    csrf = await sign_in(client)
    url = f"/api/environments/{env_id}/destroy"
    assert (await client.post(url)).status == 403
    assert (await client.post(url, headers={"X-CSRF-Token": "nope"})).status == 403
    assert (await client.post(url, headers={"X-CSRF-Token": csrf})).status == 202


async def test_writes_are_refused_without_an_admin_token(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db)
    for action in ("destroy", "redeploy"):
        resp = await client.post(f"/api/environments/{env_id}/{action}", headers={"Authorization": "Bearer x"})
        assert resp.status == 403 and "GHAPP_ADMIN_TOKEN" in (await resp.json())["error"]


def parse_events(text: str) -> list[tuple[str, str | None, object]]:
    """(event, id, data) of each Server-Sent Event in `text`."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return events


async def test_stream_of_a_finished_run_sends_everything_then_ends(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db)
    lines = [f"line {i}" for i in range(2500)] + ["multi\nline: <b>", ""]
    run_id = await add_run(db, env_id, lines)

    resp = await client.get(f"/api/runs/{run_id}/stream")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"].startswith("no-cache")
    events = parse_events(await resp.text())
    assert events[0][0] == "hello" and events[-1] == (
        "end",
        None,
        {"state": "succeeded", "error": None, "status": "active"},
    )
    got = [entry for name, _id, data in events if name == "lines" for entry in data]
    assert [g["line"] for g in got] == lines and [g["seq"] for g in got] == list(range(len(lines)))
    assert [i for name, i, _ in events if name == "lines"][-1] == str(len(lines) - 1)

    # a reconnect resumes after the last event id it saw
    resp = await client.get(f"/api/runs/{run_id}/stream", headers={"Last-Event-ID": "2499"})
    got = [e for name, _i, data in parse_events(await resp.text()) if name == "lines" for e in data]
    assert [g["seq"] for g in got] == [2500, 2501]
    assert (await client.get("/api/runs/999999/stream")).status == 404


async def test_stream_follows_a_run_as_it_is_written(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db, status="creating")
    run_id = await add_run(db, env_id, ["first"], state="running")
    resp = await client.get(f"/api/runs/{run_id}/stream")
    received = b""

    async def until(text: bytes):
        nonlocal received
        while text not in received:
            received += await asyncio.wait_for(resp.content.readany(), 10)
        return True

    await until(b'"first"')
    await db.execute("INSERT INTO run_logs (run_id, seq, line) VALUES ($1, 1, 'second')", run_id)
    await until(b'"second"')
    await db.execute("UPDATE runs SET state = 'failed', error = 'boom', finished_at = now() WHERE id = $1", run_id)
    await db.execute("UPDATE environments SET status = 'failed' WHERE id = $1", env_id)
    await until(b"event: end")
    assert parse_events(received.decode())[-1] == (
        "end",
        None,
        {"state": "failed", "error": "boom", "status": "failed"},
    )


async def test_streams_end_when_the_app_shuts_down(start_app, db):
    client = await start_app(workers=False)
    (env_id,) = await seed(db, status="creating")
    run_id = await add_run(db, env_id, ["first"], state="running")
    resp = await client.get(f"/api/runs/{run_id}/stream")
    await wait_for(lambda: _read_some(resp), what="the stream to start")
    started = asyncio.get_running_loop().time()
    await client.close()
    assert asyncio.get_running_loop().time() - started < 5


async def _read_some(resp):
    return await resp.content.readany()


async def test_out_of_range_ids_and_nul_in_query_strings_are_4xx_never_500(start_app, db):
    """Finding 9: `/api/environments/<20 digits>` and `?repository=%00` answered 500."""
    client = await start_app(workers=False)
    for path in ("/api/environments/" + "9" * 20, "/environments/" + "9" * 20, "/api/runs/" + "9" * 20 + "/log"):
        assert (await client.get(path)).status == 404, path
    for path in (
        "/api/environments?repository=%00",
        "/api/environments?status=%00",
        "/?repository=a%00b",
        "/api/environments?repository=" + "x" * 5000,
    ):
        assert (await client.get(path)).status == 400, path
    assert (await client.get("/api/environments?repository=acme/web")).status == 200


async def test_wrong_bearer_tokens_are_answered_429_with_retry_after(start_app, db):
    """Finding 4: the Bearer API took any number of wrong tokens."""
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    url = f"/api/environments/{env_id}/destroy"
    for _ in range(5):
        assert (await client.post(url, headers={"Authorization": "Bearer wrong"})).status == 403
    resp = await client.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert await db.fetchval("SELECT desired FROM environments WHERE id = $1", env_id) == "present"


async def test_another_sites_requests_cannot_lock_the_operator_out(start_app, db):
    """Attacked on 2026-12-01: writes refused for having no credentials or no CSRF token counted as failed sign-ins,
    so any page the operator opened (a preview's, which is even same-site) could POST a few times without
    credentials, or with the session cookie the browser adds but no CSRF token, and lock the operator's address
    out of the API and the dashboard's buttons for up to 15 minutes."""
    client = await start_app(workers=False, admin_token=TOKEN)
    (env_id,) = await seed(db)
    for _ in range(6):
        assert (await client.post(f"/api/environments/{env_id}/sleep")).status == 401
        assert (await client.post(f"/environments/{env_id}/sleep", data={"confirmed": "yes"})).status == 401
        assert (await client.post("/api/access-tokens", json={"repository": "acme/web"})).status == 401
    await sign_in(client)
    for _ in range(6):  # the session cookie goes along, as a browser sends it to a same-site request
        assert (await client.post(f"/api/environments/{env_id}/sleep")).status == 403
        assert (await client.post(f"/environments/{env_id}/sleep", data={"confirmed": "yes"})).status == 403
        assert (await client.delete("/api/access-tokens/1")).status == 403
    assert await db.fetchval("SELECT desired_sleeping FROM environments WHERE id = $1", env_id) is False
    resp = await client.post(f"/api/environments/{env_id}/sleep", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 202, await resp.text()
