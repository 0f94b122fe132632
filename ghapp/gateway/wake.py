"""Wake on request: a gateway guard for sleeping previews.

`Waker` is a guard (`async (request, env) -> StreamResponse | None`, run by the gateway before proxying). For a
preview that sleeps (or is going to), it asks for a wake: one idempotent UPDATE (db/sleep.request_wake), so many
requests on many replicas wake it once. Then:
- a browser (it accepts HTML) gets a small "Waking up PR #12…" page (503, `Retry-After`) that polls the same URL
  with `Accept: application/vnd.ghapp.wake+json` (answered here with the preview's status, header `X-Ghapp-Wake`)
  and reloads as soon as a poll is answered by the preview itself;
- any other client is held until the preview is active, at most GHAPP_WAKE_TIMEOUT, then answered 503 with
  `Retry-After`. Held requests for one preview share one poll of the database per replica.
While a woken preview is starting, its requests are answered the same way. The wake counts as the preview's last
request, so it does not fall asleep again at once.

Wiring into the gateway (ghapp/gateway/app.py), after the access guard (a request that may not see the preview
must not wake it):

    waker = Waker(pool, settings)
    waker.fresh = lambda request, env: (request.__setitem__(ENVIRONMENT, env), gateway.forget(env.name))
    gateway.guards.append(waker)            # and `await waker.close()` when the gateway stops

and `Gateway._proxy` must proxy to `request[ENVIRONMENT]` as the guards leave it: the environment it looked up
before the guards ran is the sleeping one, and a request held until the wake is done would get "asleep" instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import secrets
import time
from collections.abc import Callable

import asyncpg
from aiohttp import web

from ghapp.config import Settings
from ghapp.core.contract import Status
from ghapp.core.model import Environment
from ghapp.core.policy import asleep, waking, wants_page
from ghapp.db import reads, sleep

log = logging.getLogger(__name__)

STATUS_TYPE = "application/vnd.ghapp.wake+json"  # what the waking page's polls accept
MARKER = "X-Ghapp-Wake"  # on every answer of this guard: the page reloads on the first answer without it
RETRY_AFTER = 5  # seconds a client is told to wait when the preview is not awake yet
POLL = 0.1  # seconds between two looks at a preview that held requests wait for
PAGE_POLL_MS = 500

_STATUS_TEXT = {
    Status.SLEEPING: "asleep; starting it",
    Status.PENDING: "starting soon",
    Status.CREATING: "starting",
    Status.ACTIVE: "ready",
    Status.FAILED: "failed to start; retrying (see the pull request's checks)",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="{retry}"></noscript>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2328}}
h1{{font-size:1.4rem}} small{{color:#59636e}}</style></head>
<body><h1>{title}</h1>
<p>This preview was asleep because nobody used it for a while. It is starting again; this page reloads by itself
as soon as it is ready.</p>
<p role="status" id="state">Status: {status}</p>
<p><small>ghapp preview gateway</small></p>
<script nonce="{nonce}">
(function () {{
  var state = document.getElementById("state");
  function poll() {{
    fetch(location.href, {{headers: {{"Accept": "{accept}"}}, cache: "no-store", credentials: "same-origin"}})
      .then(function (r) {{
        if (r.headers.get("{marker}") === null) {{ location.reload(); return; }}
        return r.json().then(function (s) {{ state.textContent = "Status: " + s.text; setTimeout(poll, {every}); }});
      }})
      .catch(function () {{ setTimeout(poll, {every}); }});
  }}
  setTimeout(poll, {every});
}})();
</script></body></html>
"""


def ready(env: Environment) -> bool:
    return env.status == Status.ACTIVE and not env.desired_sleeping


def status_text(env: Environment) -> str:
    return _STATUS_TEXT.get(env.status, str(env.status))


def waking_page(env: Environment) -> web.Response:
    """The page a browser sees while its preview wakes (nothing from the request or the preview is shown)."""
    nonce = secrets.token_urlsafe(16)
    body = _PAGE.format(
        title=html.escape(f"Waking up PR #{env.pr_number}…"),
        status=html.escape(status_text(env)),
        retry=RETRY_AFTER,
        nonce=nonce,
        accept=STATUS_TYPE,
        marker=MARKER,
        every=PAGE_POLL_MS,
    )
    headers = {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'nonce-{nonce}'; connect-src 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Retry-After": str(RETRY_AFTER),
        MARKER: "waking",
    }
    return web.Response(status=503, text=body, content_type="text/html", charset="utf-8", headers=headers)


def status_answer(env: Environment) -> web.Response:
    """What the waking page's polls get while the guard still answers for the preview."""
    return web.json_response(
        {"status": str(env.status), "text": status_text(env), "ready": ready(env)},
        status=200,
        headers={MARKER: "waking", "Cache-Control": "no-store"},
    )


def not_ready_yet(env: Environment, waited: float) -> web.Response:
    return web.json_response(
        {
            "error": f"the preview of PR #{env.pr_number} is waking up and was not ready within {waited:.0f} s",
            "status": str(env.status),
        },
        status=503,
        headers={"Retry-After": str(RETRY_AFTER), MARKER: "waking", "Cache-Control": "no-store"},
    )


class Waker:
    """The wake guard of one gateway replica. `fresh(request, env)` is called with the preview as it is now when a
    held request may go on, so the gateway proxies to that (e.g. `request[ENVIRONMENT] = env`)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.timeout = settings.wake_timeout
        self.fresh: Callable[[web.Request, Environment], None] = lambda _request, _env: None
        self._watches: dict[int, asyncio.Task[Environment | None]] = {}

    async def __call__(self, request: web.Request, env: Environment) -> web.StreamResponse | None:
        if not (asleep(env) or waking(env)):
            return None
        now = await self._wake(env) if asleep(env) else await self._read(env.id)
        if now is None:
            return None  # gone meanwhile: the gateway says so
        if ready(now):  # a waking page's poll included: the preview answers it, and the page reloads
            self.fresh(request, now)
            return None
        if STATUS_TYPE in request.headers.get("Accept", ""):
            return status_answer(now)
        if wants_page(request.headers.get("Accept", "")):
            return waking_page(now)
        return await self._hold(request, now)

    async def _wake(self, env: Environment) -> Environment | None:
        async with self.pool.acquire() as conn:
            woke, now = await sleep.request_wake(conn, env.id)
        if woke:
            log.info("%s: woken by a request", env.label)
        return now

    async def _read(self, env_id: int) -> Environment | None:
        async with self.pool.acquire() as conn:
            return await reads.get_environment(conn, env_id)

    async def _hold(self, request: web.Request, env: Environment) -> web.StreamResponse | None:
        """Wait until the preview is active (then the request goes on), at most GHAPP_WAKE_TIMEOUT."""
        started = time.monotonic()
        watch = self._watches.get(env.id)
        if watch is None or watch.done():
            watch = self._watches[env.id] = asyncio.create_task(self._watch(env.id))
            watch.add_done_callback(lambda _t: self._forget(env.id, watch))
        try:
            now = await asyncio.wait_for(asyncio.shield(watch), self.timeout)
        except TimeoutError:
            return not_ready_yet(env, time.monotonic() - started)
        if now is None or not ready(now):
            return None if now is None else not_ready_yet(now, time.monotonic() - started)
        self.fresh(request, now)
        return None

    async def _watch(self, env_id: int) -> Environment | None:
        """Look at the preview every POLL seconds until it is active or no longer wanted, for at most the hold
        limit; shared by the requests held for it on this replica."""
        deadline = time.monotonic() + self.timeout
        while True:
            now = await self._read(env_id)
            if now is None or ready(now) or not (asleep(now) or waking(now)) or time.monotonic() >= deadline:
                return now
            await asyncio.sleep(POLL)

    def _forget(self, env_id: int, task: asyncio.Task) -> None:
        if self._watches.get(env_id) is task:
            del self._watches[env_id]

    async def close(self) -> None:
        for task in list(self._watches.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
