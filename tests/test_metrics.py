"""`GET /metrics`: deliveries by event and outcome, runs by action and result with their durations, environments
by status and the queue read from the database, GitHub API calls and errors; one registry per app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ghapp.web.metrics import delivery_labels
from tests.support import Deliveries, environment, wait_for
from tests.test_dashboard import seed

REPO = "Codertocat/Hello-World"
SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


async def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def deliver(client, deliveries: Deliveries, event: str, data: dict, delivery_id: str | None = None) -> int:
    body, headers = deliveries.signed(event, data, delivery_id)
    return (await client.post("/webhooks", data=body, headers=headers)).status


def test_delivery_labels_trust_the_event_only_once_signed():
    assert delivery_labels("pull_request", 202, b'{"accepted": "x"}') == ("pull_request", "accepted")
    assert delivery_labels("pull_request", 200, b'{"duplicate": "x"}') == ("pull_request", "duplicate")
    assert delivery_labels("star", 200, b'{"ignored": "star.created"}') == ("star", "ignored")
    assert delivery_labels("anything-goes<>", 401, b"{}") == ("unknown", "bad_signature")
    assert delivery_labels("x" * 100, 202, b"{}") == ("unknown", "accepted")
    assert delivery_labels(None, 400, b"{}") == ("unknown", "malformed")
    assert delivery_labels("pull_request", 503, b"{}") == ("pull_request", "unavailable")


async def test_deliveries_runs_and_environments(start_app, deliveries, db):
    client = await start_app()
    opened = deliveries.pull_request("opened")
    assert await deliver(client, deliveries, "pull_request", opened, "d-1") == 202
    assert await deliver(client, deliveries, "pull_request", opened, "d-1") == 200
    assert await deliver(client, deliveries, "star", {"action": "created"}) == 200
    body, headers = deliveries.signed("pull_request", opened)
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    assert (await client.post("/webhooks", data=body, headers={**headers, "X-GitHub-Event": "evil"})).status == 401

    env_id = await db.fetchval("SELECT id FROM environments")
    await wait_for(lambda: _converged(db, env_id), what="active")
    samples = await scrape(client)
    assert value(samples, "ghapp_webhook_deliveries_total", event="pull_request", outcome="accepted") == 1
    assert value(samples, "ghapp_webhook_deliveries_total", event="pull_request", outcome="duplicate") == 1
    assert value(samples, "ghapp_webhook_deliveries_total", event="star", outcome="ignored") == 1
    assert value(samples, "ghapp_webhook_deliveries_total", event="unknown", outcome="bad_signature") == 1
    assert value(samples, "ghapp_terraform_runs_total", action="apply", result="succeeded") == 1
    assert value(samples, "ghapp_terraform_run_duration_seconds_count", action="apply") == 1
    assert value(samples, "ghapp_terraform_run_duration_seconds_sum", action="apply") > 0
    assert value(samples, "ghapp_environments", status="active") == 1
    assert value(samples, "ghapp_environments", status="failed") == 0
    assert value(samples, "ghapp_queue_depth") == 0 and value(samples, "ghapp_database_up") == 1


async def _converged(db, env_id):
    env = await environment(db, env_id)
    return env.get("status") == "active" and env["observed_generation"] == env["generation"]


async def test_gauges_come_from_the_database_and_registries_are_per_app(start_app, db):
    first = await start_app(workers=False)
    await seed(db, 3)
    await seed(db, 2, status="pending", first_pr=10)
    await seed(db, 1, status="failed", first_pr=20)
    second = await start_app(workers=False)
    await second.post("/webhooks", data=b"{}", headers={"Content-Type": "application/json"})

    samples = await scrape(first)
    assert value(samples, "ghapp_environments", status="active") == 3
    assert value(samples, "ghapp_environments", status="pending") == 2
    assert value(samples, "ghapp_queue_depth") == 3  # the pending and the failed ones are not converged
    assert value(samples, "ghapp_webhook_deliveries_total", event="unknown", outcome="bad_signature") == 0
    samples = await scrape(second)
    assert value(samples, "ghapp_webhook_deliveries_total", event="unknown", outcome="bad_signature") == 1


async def test_github_calls_and_errors(start_app, deliveries, db, fake_github):
    fake_github.add_repo(REPO, 186853002)
    fake_github.add_installation(1, "Codertocat", [REPO])
    fake_github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="Codertocat")
    fake_github.fail("checks/create", 502, times=2)
    client = await start_app(
        app_id=str(fake_github.app_id), private_key=fake_github.private_key_pem, github_api_url=fake_github.base_url
    )
    assert await deliver(client, deliveries, "pull_request", deliveries.pull_request("opened")) == 202
    await wait_for(lambda: _published(db), timeout=40, what="published to the fake GitHub")

    samples = await scrape(client)
    calls = sum(v for (name, _labels), v in samples.items() if name == "ghapp_github_api_calls_total")
    assert calls == len(fake_github.calls()) and calls >= 4
    assert value(samples, "ghapp_github_api_calls_total", method="POST") >= 3
    assert value(samples, "ghapp_github_api_errors_total", reason="502") == 2


async def _published(db):
    return await db.fetchval("""SELECT count(*) FROM environments WHERE status = 'active'
                                AND observed_generation = generation AND published_version = version""")


async def test_metrics_answer_while_the_database_is_down(start_app, db, pg_dir):
    from ghapp.db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(pg_dir / "data")
    url = server.start()
    try:
        client = await start_app(workers=False, database_url=url)
        assert value(await scrape(client), "ghapp_database_up") == 1
        server.stop()
        samples = await scrape(client)
        assert value(samples, "ghapp_database_up") == 0
        assert not any(name == "ghapp_environments" for name, _ in samples)
    finally:
        server.stop()
