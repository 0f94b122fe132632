"""`GET /api/runs/{id}/stream`: a run's log as Server-Sent Events, read from the database (where the workers
write every line as it arrives), so any replica can stream any run, and a reconnect resumes at `Last-Event-ID`.
Events: `hello` at once (a client that never gets it is behind a buffering proxy and falls back to polling
`/api/runs/{id}/log?after=`), `lines` (JSON list of {seq, line}; the event id is the last seq), `ping` every
15 s, and `end` ({run state, environment status}) once the run has finished and every line was sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from ghapp.core.contract import RunState
from ghapp.db import UNAVAILABLE, reads
from ghapp.web import keys

routes = web.RouteTableDef()

POLL_INTERVAL = 0.3
PING_INTERVAL = 15.0
BATCH = 1000


def event(name: str, data: object, event_id: int | None = None) -> bytes:
    """One SSE event; JSON data never contains a raw newline, so a log line cannot break the framing."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _resume_after(request: web.Request) -> int:
    for raw in (request.headers.get("Last-Event-ID"), request.query.get("after")):
        if raw and raw.lstrip("-").isdigit():
            return max(-1, int(raw))
    return -1


@routes.get("/api/runs/{id:\\d{1,18}}/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    run_id = int(request.match_info["id"])
    pool = request.app[keys.POOL]
    async with pool.acquire() as conn:
        if await reads.get_run(conn, run_id) is None:
            raise web.HTTPNotFound(text="no such run")
    after = _resume_after(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",
        }
    )  # ingress-nginx: do not buffer this response
    await response.prepare(request)
    closing = request.app[keys.STREAMS_CLOSING]
    with contextlib.suppress(ConnectionError):
        await response.write(b"retry: 2000\n" + event("hello", {"run": run_id}))
        last_write = time.monotonic()
        while not closing.is_set():
            try:
                async with pool.acquire() as conn:
                    run = await reads.get_run(conn, run_id)  # the state first: lines are all stored before it changes
                    assert run is not None  # it existed above, and runs are never deleted
                    lines = await reads.run_log(conn, run_id, after, BATCH)
                    env = (
                        await reads.get_environment(conn, run["environment_id"])
                        if run["state"] != RunState.RUNNING
                        else None
                    )
            except UNAVAILABLE:
                break  # the client reconnects (`retry`) and resumes at its Last-Event-ID
            if lines:
                after = lines[-1]["seq"]
                await response.write(event("lines", [{"seq": x["seq"], "line": x["line"]} for x in lines], after))
                last_write = time.monotonic()
                if len(lines) == BATCH:
                    continue
            if env is not None:
                await response.write(event("end", {"state": run["state"], "error": run["error"], "status": env.status}))
                break
            if time.monotonic() - last_write >= PING_INTERVAL:
                await response.write(event("ping", {}))
                last_write = time.monotonic()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(closing.wait(), POLL_INTERVAL)
    return response
