"""Prometheus metrics, one registry per application: counters kept in the process (deliveries, runs, GitHub
calls) and gauges read from the database at scrape time (environments by status, the queue of unconverged
ones), so every replica reports the same cluster-wide gauges."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ghapp.core.contract import Status
from ghapp.db import UNAVAILABLE, reads
from ghapp.web import keys, webhooks

log = logging.getLogger(__name__)

RUN_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
WAKE_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
_EVENT_NAME = re.compile(r"[a-z_]{1,40}")
# What `POST /webhooks` answered, by status (200 is told apart by the body: duplicate or ignored).
_OUTCOMES = {
    202: "accepted",
    400: "malformed",
    401: "bad_signature",
    408: "timeout",
    413: "too_large",
    503: "unavailable",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "ghapp_webhook_deliveries", "Webhook deliveries by event and outcome", ["event", "outcome"], registry=r
        )
        self.runs = Counter(
            "ghapp_terraform_runs", "Finished Terraform runs by action and result", ["action", "result"], registry=r
        )
        self.run_duration = Histogram(
            "ghapp_terraform_run_duration_seconds",
            "Terraform run duration",
            ["action"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.github_calls = Counter("ghapp_github_api_calls", "GitHub API requests by method", ["method"], registry=r)
        self.github_errors = Counter(
            "ghapp_github_api_errors",
            "GitHub API requests that failed, by HTTP status or exception",
            ["reason"],
            registry=r,
        )
        self.environments = Gauge(
            "ghapp_environments",
            "Environments by status (from the database at scrape time; the same on every replica)",
            ["status"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "ghapp_queue_depth",
            "Environments whose observed state has not converged to "
            "the desired state yet (from the database at scrape time)",
            registry=r,
        )
        self.preview_access = Counter(
            "ghapp_preview_access_decisions",
            "Access decisions on requests to previews (allow, sign_in, deny, unavailable)",
            ["verdict"],
            registry=r,
        )
        self.preview_sign_ins = Counter(
            "ghapp_preview_sign_ins",
            "Sign-ins with GitHub for previews, by outcome (started, allowed, denied, cancelled, bad_state, "
            "github_error)",
            ["outcome"],
            registry=r,
        )
        self.gateway_requests = Counter(
            "ghapp_gateway_requests", "Requests to previews through the gateway, by HTTP status", ["code"], registry=r
        )
        self.database_up = Gauge("ghapp_database_up", "1 if the last scrape could read the database", registry=r)
        # Sleep and wake. The sleeping previews are `ghapp_environments{status="sleeping"}`.
        self.wakeups = Counter("ghapp_wakeups", "Sleeping previews woken (by this replica)", registry=r)
        self.wake_latency = Histogram(
            "ghapp_wake_latency_seconds",
            "From the request that woke a sleeping preview to the preview being active again",
            buckets=WAKE_BUCKETS,
            registry=r,
        )

    def run_finished(self, action: str, result: str, seconds: float) -> None:
        self.runs.labels(action, result).inc()
        self.run_duration.labels(action).observe(seconds)

    def woken(self, seconds: float) -> None:
        self.wakeups.inc()
        self.wake_latency.observe(seconds)

    def delivery_answered(self, event: str | None, status: int, body: bytes) -> None:
        self.deliveries.labels(*delivery_labels(event, status, body)).inc()

    def set_environments(self, counts: dict[str, tuple[int, int]]) -> None:
        for status in Status:
            self.environments.labels(str(status)).set(counts.get(status, (0, 0))[0])
        self.queue_depth.set(sum(unconverged for _n, unconverged in counts.values()))

    def github_trace(self) -> aiohttp.TraceConfig:
        """Counts every request of the session it is given to (the app's one GitHub session)."""
        trace = aiohttp.TraceConfig()

        async def on_end(_session, _ctx, params: aiohttp.TraceRequestEndParams) -> None:
            self.github_calls.labels(params.method).inc()
            if params.response.status >= 400:
                self.github_errors.labels(str(params.response.status)).inc()

        async def on_exception(_session, _ctx, params: aiohttp.TraceRequestExceptionParams) -> None:
            self.github_calls.labels(params.method).inc()
            self.github_errors.labels(type(params.exception).__name__).inc()

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_exception)
        return trace


def delivery_labels(event: str | None, status: int, body: bytes) -> tuple[str, str]:
    """(event, outcome) of one answered delivery (pure). `event` is only given for a delivery whose signature was
    checked, and kept only if it looks like an event name: labels must not grow with what strangers send."""
    outcome = _OUTCOMES.get(status, "other")
    if status in (200, 400):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        if status == 200:
            outcome = "duplicate" if "duplicate" in answer else "ignored"
        elif isinstance(answer, dict) and answer.get("error") == webhooks.DISCONNECTED:
            outcome = "disconnected"
    if status in (400, 401, 408, 413) or not event or not _EVENT_NAME.fullmatch(event):
        event = "unknown"
    return event, outcome


def counting_deliveries(handler: Callable[[web.Request], Awaitable[web.Response]]):
    """Wraps the webhook handler to count what it answered."""

    async def counted(request: web.Request) -> web.Response:
        metrics = request.app[keys.METRICS]
        try:
            response = await handler(request)
        except Exception as e:
            status = e.status if isinstance(e, web.HTTPException) else 503 if isinstance(e, UNAVAILABLE) else 500
            metrics.delivery_answered(request.get(webhooks.SIGNED_EVENT), status, b"")
            raise
        event = request.get(webhooks.SIGNED_EVENT)  # the header only counts once its signature was checked
        metrics.delivery_answered(event, response.status, response.body if isinstance(response.body, bytes) else b"")
        return response

    return counted


async def scrape(request: web.Request) -> web.Response:
    metrics = request.app[keys.METRICS]
    metrics.database_up.set(0)
    if request.app[keys.READY].is_set():
        try:
            async with request.app[keys.POOL].acquire(timeout=3) as conn:
                metrics.set_environments(await reads.count_by_status(conn))
            metrics.database_up.set(1)
        except Exception as e:  # noqa: BLE001 - whatever the database does, the process metrics are still served
            log.warning("metrics: cannot read the database (%s: %s)", type(e).__name__, e)
            metrics.environments.clear()
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> Metrics:
    app[keys.METRICS] = metrics = Metrics()
    app.router.add_get("/metrics", scrape)
    return metrics
