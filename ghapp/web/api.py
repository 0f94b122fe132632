"""Health, readiness and the JSON API over environments."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from ghapp.core.contract import Status
from ghapp.core.gateway import PreviewSite, served_url
from ghapp.core.model import Environment
from ghapp.core.render import preview_urls
from ghapp.db import UNAVAILABLE, reads, schema_is_current
from ghapp.web import keys

routes = web.RouteTableDef()

MAX_PAGE = 500


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def environment_json(env: Environment, site: PreviewSite) -> dict:
    """An environment as the API shows it; `site`: where the gateway publishes previews (Settings.preview_site)."""
    return {
        "id": env.id,
        "name": env.name,
        "repository": env.repository,
        "pr_number": env.pr_number,
        "pr_url": env.pr_url,
        "title": env.title,
        "author": env.author,
        "head_ref": env.head_ref,
        "is_fork": env.is_fork,
        "status": env.status,
        "desired": env.desired,
        "head_sha": env.head_sha,
        "desired_sha": env.desired_sha,
        "deployed_sha": env.deployed_sha,
        "preview_url": env.preview_url,  # the module's output: where the gateway sends the preview's requests
        "gateway_url": served_url(env.name, env.preview_url, site),  # what people open
        "preview_urls": preview_urls(env.outputs or {}),
        "outputs": env.outputs,
        "config_source": env.config_source,
        "config_blob_sha": env.config_blob_sha,
        "hold": env.hold,
        "hold_reason": env.hold_reason,
        "progress": env.progress,
        "converged": env.observed_generation >= env.generation,
        "attempts": env.attempts,
        "last_error": env.last_error,
        "next_attempt_at": _time(env.next_attempt_at),
        "created_at": _time(env.created_at),
        "updated_at": _time(env.updated_at),
        "expires_at": _time(env.expires_at),  # null while kept
        "keep": env.keep,  # `/preview keep`: no expiry while the PR is open
        "ttl": env.ttl,  # seconds, from the repository's configuration; null: the operator's GHAPP_ENV_TTL
        "sleeping": env.desired_sleeping,  # asleep or going to sleep (`status` says which)
        "sleep_after": env.sleep_after,
        "last_request_at": _time(env.last_request_at),
    }


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    if not request.app[keys.READY].is_set():
        return web.json_response({"status": "starting: migrations not applied yet"}, status=503)
    try:
        async with request.app[keys.POOL].acquire(timeout=3) as conn:
            if not await schema_is_current(conn):
                return web.json_response({"status": "migrations pending"}, status=503)
    except UNAVAILABLE as e:
        return web.json_response({"status": "database unavailable", "error": type(e).__name__}, status=503)
    return web.json_response({"status": "ready"})


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    return max(low, min(high, value))


@routes.get("/api/environments")
async def list_environments(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in Status}:
        raise web.HTTPBadRequest(text=f"unknown status {status!r}")
    limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
    after = _int_param(request, "after", 0, 0, 2**62)
    repository = request.query.get("repository") or None
    async with request.app[keys.POOL].acquire() as conn:
        envs = await reads.list_environments(conn, status=status, repository=repository, after=after, limit=limit)
    site = request.app[keys.SETTINGS].preview_site
    next_url = None
    if len(envs) == limit:
        next_url = str(request.rel_url.update_query(after=envs[-1].id))
    return web.json_response({"environments": [environment_json(e, site) for e in envs], "next": next_url})


@routes.get("/api/environments/{id:\\d{1,18}}")
async def get_environment(request: web.Request) -> web.Response:
    async with request.app[keys.POOL].acquire() as conn:
        env = await reads.get_environment(conn, int(request.match_info["id"]))
        if env is None:
            raise web.HTTPNotFound(text="no such environment")
        runs = await reads.list_runs(conn, env.id)
    body = environment_json(env, request.app[keys.SETTINGS].preview_site)
    body["runs"] = [{**r, "started_at": _time(r["started_at"]), "finished_at": _time(r["finished_at"])} for r in runs]
    return web.json_response(body)


@routes.get("/api/runs/{id:\\d{1,18}}/log")
async def run_log(request: web.Request) -> web.Response:
    after = _int_param(request, "after", -1, -1, 2**31)
    async with request.app[keys.POOL].acquire() as conn:
        run = await reads.get_run(conn, int(request.match_info["id"]))  # before the lines: none is missed
        if run is None:
            raise web.HTTPNotFound(text="no such run")
        lines = await reads.run_log(conn, run["id"], after)
    return web.json_response(
        {
            "run": {**run, "started_at": _time(run["started_at"]), "finished_at": _time(run["finished_at"])},
            "lines": [{"seq": x["seq"], "at": _time(x["at"]), "line": x["line"]} for x in lines],
        }
    )
