"""The dashboard's pages: the list of environments, one environment with its runs and log, sign-in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp_jinja2
from aiohttp import web

from ghapp.core.contract import Desired, Status, short_sha
from ghapp.core.gateway import PreviewSite, served_url
from ghapp.core.render import KEPT, preview_urls
from ghapp.db import reads
from ghapp.web import auth, keys
from ghapp.web.dashboard import display

routes = web.RouteTableDef()

PAGE = 200
MAX_PAGE = 1000
LOG_TAIL = 5000  # lines of a run shown on its page; the JSON API has them all
STATUSES = [str(s) for s in Status]


def render(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    """A page, with what every page needs: the operator's session (None for visitors) and where we are."""
    context = {
        "session": auth.session(request),
        "here": request.path_qs,
        "csrf_field": auth.CSRF_FIELD,
        "writes_enabled": request.app[keys.SETTINGS].admin_token is not None,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def message(request: web.Request, status: int, title: str, text: str, sign_in: bool = False) -> web.Response:
    return render(request, "message.html", {"title": title, "text": text, "sign_in": sign_in}, status=status)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One environment as the pages show it (plain strings, computed once; the list columns are enough)."""

    id: int
    name: str
    repository: str
    pr_number: int
    title: str
    author: str
    status: str
    desired_sha: str | None
    status_class: str
    status_symbol: str
    pr_url: str | None
    commit_url: str | None
    deployed_short: str
    preview_url: str | None
    gateway_url: str | None  # what people open; `preview_url` is the module's own address behind it
    age: str
    created: str
    created_iso: str
    expires: str
    expires_at: str
    can_destroy: bool
    can_redeploy: bool
    can_sleep: bool
    can_wake: bool


def row(env: Mapping[str, Any], now: dt.datetime, site: PreviewSite) -> Row:
    status, desired, present = env["status"], env["desired"], env["desired"] == Desired.PRESENT
    return Row(
        id=env["id"],
        name=env["name"] or str(env["id"]),
        repository=env["repository"],
        pr_number=env["pr_number"],
        title=env["title"],
        author=env["author"],
        status=status,
        desired_sha=env["desired_sha"],
        status_class=display.status_class(status),
        status_symbol=display.status_symbol(status),
        pr_url=display.safe_url(env["pr_url"]),
        commit_url=display.commit_url(env["repository"], env["pr_url"], env["deployed_sha"]),
        deployed_short=short_sha(env["deployed_sha"]),
        preview_url=display.safe_url(env["preview_url"]),
        gateway_url=served_url(env["name"], display.safe_url(env["preview_url"]), site),
        age=display.age(env["created_at"], now),
        created=display.utc(env["created_at"]),
        created_iso=display.iso(env["created_at"]),
        expires=(KEPT if env["keep"] else display.expiry(env["expires_at"], now)) if present else "",
        expires_at=display.utc(env["expires_at"]),
        can_destroy=not (desired == Desired.ABSENT and status == Status.DESTROYED),
        can_redeploy=present and bool(env["desired_sha"]),
        can_sleep=present and status == Status.ACTIVE and not env["desired_sleeping"],
        can_wake=present and (env["desired_sleeping"] or status == Status.SLEEPING),
    )


_Default = TypeVar("_Default", int, None)


def _int(request: web.Request, name: str, default: _Default, low: int, high: int) -> int | _Default:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        return max(low, min(high, int(raw)))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None


@routes.get("/")
async def environments(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        return message(request, 400, "Unknown status", f"There is no status {status!r}.")
    repository = request.query.get("repository") or None
    before = _int(request, "before", None, 1, 2**62)
    limit = _int(request, "limit", PAGE, 1, MAX_PAGE)
    async with request.app[keys.POOL].acquire() as conn:
        envs = await reads.list_environments_newest(
            conn, status=status, repository=repository, before=before, limit=limit
        )
        counts = await reads.count_by_repository_and_status(conn)
    now = dt.datetime.now(dt.UTC)
    by_status = dict.fromkeys(STATUSES, 0)
    for repo, st, n in counts:
        if repository is None or repo == repository:
            by_status[st] = by_status.get(st, 0) + n
    older = None
    if len(envs) == limit:
        older = str(request.rel_url.update_query(before=envs[-1]["id"]))
    return render(
        request,
        "environments.html",
        {
            "rows": [row(e, now, request.app[keys.SETTINGS].preview_site) for e in envs],
            "status": status,
            "repository": repository,
            "statuses": STATUSES,
            "by_status": by_status,
            "total": sum(by_status.values()),
            "repositories": sorted({repo for repo, _st, _n in counts}),
            "older": older,
            "newest": str(request.rel_url.with_query({k: v for k, v in request.query.items() if k != "before"}))
            if before
            else None,
        },
    )


@routes.get("/environments/{id:\\d{1,18}}")
async def environment(request: web.Request) -> web.Response:
    env_id = int(request.match_info["id"])
    wanted = _int(request, "run", None, 1, 2**62)
    async with request.app[keys.POOL].acquire() as conn:
        env = await reads.get_environment(conn, env_id)
        if env is None:
            return message(request, 404, "Not found", f"There is no environment {env_id}.")
        runs = await reads.list_runs(conn, env_id)
        run = next((r for r in runs if r["id"] == wanted), None) if wanted else (runs[0] if runs else None)
        if wanted and run is None:
            found = await reads.get_run(conn, wanted)
            run = found if found and found["environment_id"] == env_id else None
        lines, total = await reads.run_log_tail(conn, run["id"], LOG_TAIL) if run else ([], 0)
    now = dt.datetime.now(dt.UTC)
    return render(
        request,
        "environment.html",
        {
            "r": row(vars(env), now, request.app[keys.SETTINGS].preview_site),
            "env": env,
            "now": now,
            "fmt": display,
            "runs": runs,
            "run": run,
            "log_text": "".join(f"{line['line']}\n" for line in lines),
            "log_after": lines[-1]["seq"] if lines else -1,
            "log_hidden": total - len(lines),
            "converged": env.observed_generation >= env.generation,
            "outputs": {k: v for k, v in (env.outputs or {}).items() if k not in ("preview_url", "preview_urls")},
            "services": [(name, url, display.safe_url(url)) for name, url in preview_urls(env.outputs or {}).items()],
        },
    )


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    status = 200 if request.app[keys.SETTINGS].admin_token else 403
    return render(
        request, "login.html", {"next": display.local_path(request.query.get("next")), "error": None}, status=status
    )


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    target = display.local_path(str(form.get("next", "")))
    token = request.app[keys.SETTINGS].admin_token
    if token is None:
        return render(request, "login.html", {"next": target, "error": None}, status=403)
    if refusal := auth.throttled(request):
        response = render(request, "login.html", {"next": target, "error": refusal.reason}, status=429)
        response.headers["Retry-After"] = str(refusal.retry_after)
        return response
    throttle, client = request.app[keys.THROTTLE], auth.client_address(request)
    if not auth.same_secret(token, str(form.get("token", ""))):
        throttle.failed(client)
        return render(request, "login.html", {"next": target, "error": "That is not the admin token."}, status=403)
    throttle.succeeded(client)
    response = see_other(target)
    await auth.sign_in(request, response)
    return response


@routes.get("/logout")
async def logout_page(request: web.Request) -> web.Response:
    return render(request, "logout.html", {})


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    """Ends the session on the server; behind the session's CSRF token, so another site cannot sign you out."""
    form = await request.post()
    current = auth.session(request)
    if current is not None and not auth.same_secret(current.csrf, str(form.get(auth.CSRF_FIELD, ""))):
        return message(request, 403, "Not signed out", "The form's CSRF token is missing or wrong; reload the page.")
    response = see_other("/")
    await auth.sign_out(request, response)
    return response
