"""`ghapp setup`: create the GitHub App from `app.yml` with GitHub's App-manifest flow.

It serves one page whose button posts the manifest to GitHub; GitHub shows the operator the App to create and
redirects back here with a one-time code, which is exchanged at `POST /app-manifests/{code}/conversions` for the
App's id, private key and webhook secret. Those are written to `.env` and a key file, both mode 0600.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import secrets
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from ghapp.config import web_url

log = logging.getLogger(__name__)

STATE = web.AppKey("state", dict)
SIGN_IN_CALLBACK = "/gateway/callback"  # ghapp/gateway/access.py serves it


def load_manifest(path: Path, public_url: str, callback_url: str) -> dict:
    """app.yml with this installation's addresses filled in."""
    manifest = yaml.safe_load(path.read_text())
    manifest["hook_attributes"] = {**manifest.get("hook_attributes", {}), "url": f"{public_url}/webhooks"}
    manifest["redirect_url"] = callback_url
    # "Sign in with GitHub" on previews comes back to this one URL (docs/operations.md, "Preview access").
    manifest["callback_urls"] = [f"{public_url}{SIGN_IN_CALLBACK}"]
    manifest["url"] = manifest.get("url") or public_url
    return manifest


def write_secret_file(path: Path, text: str) -> None:
    """Create or replace `path` with mode 0600 from the start (never briefly readable by others)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def update_dotenv(path: Path, values: dict[str, str]) -> None:
    """Set `values` in a .env file, keeping its other lines; mode 0600."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0].removeprefix("export ").strip() not in values]
    kept += [f"{k}={v}" for k, v in values.items()]
    write_secret_file(path, "\n".join(kept) + "\n")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Create the ghapp GitHub App</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Create the ghapp GitHub App</h1>
<p>GitHub will show you the App described in <code>app.yml</code> (events, permissions, webhook
<code>{hook}</code>) before anything is created.</p>
<form action="{action}" method="post">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit">Create the App on GitHub</button>
</form></body></html>"""

DONE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ghapp App created</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>The App {name} was created</h1><p>Its id, key and webhook secret are in <code>{env}</code>,
with its OAuth client id and secret (for "Sign in with GitHub" on previews).
Install it on your repositories: <a href="{install}">{install}</a>. You can close this page.</p></body></html>"""


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    action = f"{state['web_url']}/settings/apps/new"
    if state.get("org"):
        action = f"{state['web_url']}/organizations/{state['org']}/settings/apps/new"
    action += f"?state={state['nonce']}"
    body = PAGE.format(
        action=html.escape(action),
        hook=html.escape(state["manifest"]["hook_attributes"]["url"]),
        manifest=html.escape(json.dumps(state["manifest"])),
    )
    return web.Response(text=body, content_type="text/html")


async def callback(request: web.Request) -> web.Response:
    state = request.app[STATE]
    code = request.query.get("code", "")
    if not secrets.compare_digest(request.query.get("state", ""), state["nonce"]):
        raise web.HTTPBadRequest(text="unexpected state: start again from the setup page")
    if not code.isalnum() or len(code) > 100:
        raise web.HTTPBadRequest(text="missing or malformed code")
    async with aiohttp.ClientSession() as session:
        url = f"{state['api_url']}/app-manifests/{code}/conversions"
        async with session.post(
            url, headers={"Accept": "application/vnd.github+json", "User-Agent": "ghapp-setup"}
        ) as resp:
            if resp.status != 201:
                raise web.HTTPBadGateway(text=f"GitHub refused the code ({resp.status}): {await resp.text()}")
            app = await resp.json()
    key_path = state["dir"] / f"{app['slug']}.private-key.pem"
    write_secret_file(key_path, app["pem"])
    update_dotenv(
        state["dir"] / ".env",
        {
            "GITHUB_APP_ID": str(app["id"]),
            "GITHUB_PRIVATE_KEY_PATH": str(key_path),
            "GITHUB_WEBHOOK_SECRET": app["webhook_secret"],
            "GITHUB_CLIENT_ID": app["client_id"],
            "GITHUB_CLIENT_SECRET": app["client_secret"],
        },
    )
    state["created"] = {"id": app["id"], "slug": app["slug"], "key": str(key_path)}
    state["done"].set()
    install = f"{app.get('html_url', state['web_url'] + '/apps/' + app['slug'])}/installations/new"
    return web.Response(
        text=DONE.format(
            name=html.escape(app.get("name", app["slug"])),
            env=html.escape(str(state["dir"] / ".env")),
            install=html.escape(install),
        ),
        content_type="text/html",
    )


def create_setup_app(
    manifest_path: Path, *, public_url: str, callback_url: str, api_url: str, directory: Path, org: str | None = None
) -> web.Application:
    app = web.Application()
    app[STATE] = {
        "manifest": load_manifest(manifest_path, public_url, callback_url),
        "nonce": secrets.token_urlsafe(24),
        "api_url": api_url.rstrip("/"),
        "web_url": web_url(api_url),
        "dir": directory,
        "org": org,
        "done": asyncio.Event(),
    }
    app.router.add_get("/", index)
    app.router.add_get("/setup/callback", callback)
    return app


async def run_setup(
    manifest_path: Path, *, host: str, port: int, public_url: str, api_url: str, directory: Path, org: str | None
) -> dict:
    callback_url = f"http://{host}:{port}/setup/callback"
    app = create_setup_app(
        manifest_path, public_url=public_url, callback_url=callback_url, api_url=api_url, directory=directory, org=org
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"Open http://{host}:{port}/ in your browser to create the GitHub App.", flush=True)
    try:
        await app[STATE]["done"].wait()
        await asyncio.sleep(0.5)  # let the browser receive the last page
    finally:
        await runner.cleanup()
    return app[STATE]["created"]
