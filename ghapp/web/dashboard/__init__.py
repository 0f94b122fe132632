"""The dashboard: server-rendered pages (aiohttp-jinja2), a little plain JavaScript, live logs over SSE, and
guarded destroy/redeploy for signed-in operators and API clients."""

from __future__ import annotations

import asyncio
from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ghapp.core.contract import short_sha
from ghapp.web import keys
from ghapp.web.dashboard import actions, stream, views

# Pages load only what this app serves: no inline script, no third-party anything, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")


async def _end_streams(app: web.Application) -> None:
    app[keys.STREAMS_CLOSING].set()


def setup(app: web.Application) -> None:
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("ghapp.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["short_sha"] = short_sha
    app[keys.STREAMS_CLOSING] = asyncio.Event()
    app.router.add_routes(views.routes)
    app.router.add_routes(actions.routes)
    app.router.add_routes(stream.routes)
    app.router.add_static("/static/", str(resources.files("ghapp.web") / "static"), name="static")
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_end_streams)
