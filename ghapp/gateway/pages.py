"""The gateway's own small HTML pages (unknown host, a preview not active, an upstream error). Everything shown is
escaped; nothing the client or the preview sent becomes markup, a link or a header."""

from __future__ import annotations

import html

from aiohttp import web

from ghapp.core.contract import Status
from ghapp.core.model import Environment

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2328}}
h1{{font-size:1.4rem}} small{{color:#59636e}}</style></head>
<body><h1>{title}</h1><p role="alert">{text}</p><p><small>ghapp preview gateway · {status}</small></p></body></html>
"""


def page(status: int, title: str, text: str, *, retry_after: int | None = None) -> web.Response:
    headers = dict(SECURITY_HEADERS)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = _TEMPLATE.format(title=html.escape(title), text=html.escape(text), status=status)
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8", headers=headers)


def unknown_host(host: str) -> web.Response:
    return page(404, "No preview here", f"{host[:200]} is not the address of a preview environment.")


def not_active(env: Environment) -> web.Response:
    """What a preview that cannot be proxied to says instead, by its status."""
    who = f"The preview of {env.label}"
    if env.status in (Status.PENDING, Status.CREATING):
        return page(503, f"{env.label} is being deployed", f"{who} is not ready yet; try again shortly.", retry_after=5)
    if env.status == Status.SLEEPING:
        return page(503, f"{env.label} is asleep", f"{who} is asleep.", retry_after=10)
    if env.status == Status.FAILED:
        return page(502, f"{env.label} failed to deploy", f"{who} failed to deploy; see the pull request's checks.")
    if env.status in (Status.DESTROYING, Status.DESTROYED):
        return page(404, f"{env.label} was destroyed", f"{who} was destroyed.")
    return page(502, f"{env.label} has no address", f"{who} has no http(s) address to serve.")


def upstream_error(env: Environment, status: int, reason: str) -> web.Response:
    return page(status, f"{env.label} is not answering", f"The preview of {env.label} {reason}.")


def unavailable(reason: str) -> web.Response:
    return page(503, "The gateway is not ready", reason, retry_after=5)
