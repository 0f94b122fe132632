"""Force destroy, redeploy, sleep and wake, from the dashboard (session + CSRF token + confirmation) and from the API
(`Authorization: Bearer`). Both only write desired state; the workers do the rest."""

from __future__ import annotations

import logging

from aiohttp import web

from ghapp.core.contract import Desired, short_sha
from ghapp.core.model import Environment
from ghapp.db import desired, reads, sleep
from ghapp.web import api, auth, keys
from ghapp.web.dashboard import display
from ghapp.web.dashboard.views import message, render, see_other

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

ACTIONS = "destroy|redeploy|sleep|wake"
WORDING = {
    "destroy": (
        "Force destroy",
        "Destroy {name}? Terraform destroys the preview even though the pull request may "
        "still be open; a new push or `/preview deploy` brings it back.",
    ),
    "redeploy": ("Redeploy", "Redeploy {name} at {sha}? Terraform applies it again."),
    "sleep": ("Sleep", "Put {name} to sleep? Nothing runs, everything is kept; its first request wakes it."),
    "wake": ("Wake", "Wake {name}? Terraform starts it again at {sha}."),
}


class Conflict(Exception):
    """The action does not apply to the environment as it is."""


async def perform(request: web.Request, env_id: int, action: str, via: str) -> Environment | None:
    """Write the desired state for `action`; the environment afterwards, or None if there is no such one."""
    async with request.app[keys.POOL].acquire() as conn, conn.transaction():
        env = await reads.get_environment(conn, env_id)
        if env is None:
            return None
        if action == "destroy":
            await desired.request_destroy(conn, env_id)
        elif action == "sleep":
            if not await sleep.request_sleep(conn, env_id):
                raise Conflict("the environment is already asleep, or is to be destroyed")
        elif action == "wake":
            if not (await sleep.request_wake(conn, env_id))[0]:
                raise Conflict("the environment is not asleep")
        elif env.desired == Desired.PRESENT and env.desired_sha:
            await desired.deploy_head(
                conn, env_id, env.desired_sha, approve=False, ttl_seconds=request.app[keys.SETTINGS].env_ttl
            )
        else:
            raise Conflict(
                "the environment is to be destroyed; push to the pull request or comment "
                "`/preview deploy` to deploy it again"
            )
        log.info("%s#%d: %s requested by an operator (%s)", env.repository, env.pr_number, action, via)
        return await reads.get_environment(conn, env_id)


@routes.get(f"/environments/{{id:\\d{{1,18}}}}/{{action:{ACTIONS}}}")
async def confirm_page(request: web.Request) -> web.Response:
    env_id, action = int(request.match_info["id"]), request.match_info["action"]
    if auth.session(request) is None:
        return message(request, 401, "Sign in first", "Only a signed-in operator can do this.", sign_in=True)
    async with request.app[keys.POOL].acquire() as conn:
        env = await reads.get_environment(conn, env_id)
    if env is None:
        return message(request, 404, "Not found", f"There is no environment {env_id}.")
    return _confirm(request, env, action, display.local_path(request.query.get("next"), f"/environments/{env_id}"))


def _confirm(request: web.Request, env: Environment, action: str, target: str) -> web.Response:
    title, question = WORDING[action]
    return render(
        request,
        "confirm.html",
        {
            "env": env,
            "action": action,
            "title": title,
            "next": target,
            "question": question.format(
                name=env.name or f"{env.repository}#{env.pr_number}", sha=short_sha(env.desired_sha)
            ),
        },
    )


@routes.post(f"/environments/{{id:\\d{{1,18}}}}/{{action:{ACTIONS}}}")
async def form_action(request: web.Request) -> web.Response:
    env_id, action = int(request.match_info["id"]), request.match_info["action"]
    form = await request.post()
    refusal = auth.check_form(request, form)
    if refusal is not None:
        response = message(request, refusal.status, "Not allowed", refusal.reason, sign_in=refusal.status == 401)
        if refusal.retry_after:
            response.headers["Retry-After"] = str(refusal.retry_after)
        return response
    target = display.local_path(str(form.get("next", "")), f"/environments/{env_id}")
    if form.get("confirmed") != "yes":  # no JavaScript confirmation happened: ask on a page
        async with request.app[keys.POOL].acquire() as conn:
            env = await reads.get_environment(conn, env_id)
        if env is None:
            return message(request, 404, "Not found", f"There is no environment {env_id}.")
        return _confirm(request, env, action, target)
    try:
        env = await perform(request, env_id, action, "dashboard")
    except Conflict as e:
        return message(request, 409, f"Cannot {action}", str(e))
    if env is None:
        return message(request, 404, "Not found", f"There is no environment {env_id}.")
    return see_other(target)


@routes.post(f"/api/environments/{{id:\\d{{1,18}}}}/{{action:{ACTIONS}}}")
async def api_action(request: web.Request) -> web.Response:
    env_id, action = int(request.match_info["id"]), request.match_info["action"]
    refusal = auth.check_api(request)
    if refusal is not None:
        headers = {"WWW-Authenticate": 'Bearer realm="ghapp"'} if refusal.status == 401 else {}
        if refusal.retry_after:
            headers["Retry-After"] = str(refusal.retry_after)
        return web.json_response({"error": refusal.reason}, status=refusal.status, headers=headers)
    try:
        env = await perform(request, env_id, action, "api")
    except Conflict as e:
        return web.json_response({"error": str(e)}, status=409)
    if env is None:
        return web.json_response({"error": "no such environment"}, status=404)
    return web.json_response(api.environment_json(env, request.app[keys.SETTINGS].preview_site), status=202)
