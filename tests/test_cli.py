"""The `ghapp` command line, run as a user runs it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from ghapp.logsafe import SafeFormatter
from ghapp.web.app import create_app
from tests.conftest import WEBHOOK_SECRET
from tests.support import ROOT, WEBHOOKS, wait_for


def ghapp(*args: str, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GHAPP_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "ghapp", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def running_app(settings, aiohttp_client):
    client = await aiohttp_client(create_app(settings))
    return client


async def test_receive_signs_and_posts_a_payload(running_app, database_url, db):
    url = str(running_app.make_url("/webhooks"))
    env = {"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
    payload = str(WEBHOOKS / "pull_request.opened.json")

    async def accepted():
        result = await _run_in_thread("receive", "--event", "pull_request", payload, "--url", url, env=env)
        return result if result.returncode == 0 else None

    result = await wait_for(accepted, what="the app to accept the delivery")
    assert result.stdout.startswith("202 ")

    wrong = await _run_in_thread(
        "receive", "--event", "pull_request", payload, "--url", url, env={"GITHUB_WEBHOOK_SECRET": "wrong"}
    )
    assert wrong.returncode == 1 and wrong.stdout.startswith("401 ")
    assert await db.fetchval("SELECT count(*) FROM environments") == 1


async def _run_in_thread(*args, env=None):
    import asyncio

    return await asyncio.to_thread(ghapp, *args, env=env)


async def test_migrate_envs_and_destroy_against_database_url(database_url, db, tmp_path):
    env = {"DATABASE_URL": database_url}
    first = await _run_in_thread("migrate", env=env)
    assert first.returncode == 0 and "applied migrations: 1" in first.stdout
    assert (await _run_in_thread("migrate", env=env)).stdout.strip() == "the schema is up to date"

    assert (await _run_in_thread("envs", env=env)).stdout.strip() == "no environments"
    await db.execute(
        """INSERT INTO environments (repo_id, repository, pr_number, name, desired, desired_sha, status,
                                     observed_generation, provisioned, deployed_sha, preview_url)
           VALUES (1, 'acme/shop', 7, 'pr-7-shop-1', 'present', 'abcdef1234', 'active', 1, true, 'abcdef1234',
                   'http://x/')"""
    )
    listing = await _run_in_thread("envs", env=env)
    assert "acme/shop#7" in listing.stdout and "active" in listing.stdout and "http://x/" in listing.stdout
    as_json = json.loads((await _run_in_thread("envs", "--json", env=env)).stdout)
    assert as_json[0]["repository"] == "acme/shop" and as_json[0]["status"] == "active"

    destroyed = await _run_in_thread("destroy", "acme/shop#7", env=env)
    assert destroyed.returncode == 0, destroyed.stderr
    row = await db.fetchrow("SELECT desired, generation FROM environments")
    assert (row["desired"], row["generation"]) == ("absent", 2)

    missing = await _run_in_thread("destroy", "acme/shop#8", env=env)
    assert missing.returncode == 1 and "no environment" in missing.stderr
    malformed = await _run_in_thread("destroy", "shop-7", env=env)
    assert malformed.returncode == 2 and "OWNER/REPO#NUMBER" in malformed.stderr


def test_configuration_errors_are_clear(tmp_path):
    bad = ghapp("serve", env={"GHAPP_MAX_PARALLEL_RUNS": "lots"}, cwd=tmp_path)
    assert bad.returncode == 2 and "GHAPP_MAX_PARALLEL_RUNS" in bad.stderr and "Traceback" not in bad.stderr
    no_secret = ghapp("serve", env={"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": "pem"}, cwd=tmp_path)
    assert no_secret.returncode == 2 and "GITHUB_WEBHOOK_SECRET" in no_secret.stderr
    ttl = ghapp("serve", env={"GHAPP_ENV_TTL": "3 days"}, cwd=tmp_path)
    assert ttl.returncode == 2 and "GHAPP_ENV_TTL" in ttl.stderr


def test_serve_refuses_unsigned_deliveries_off_loopback_and_weak_admin_tokens(tmp_path):
    """Findings 4 and 6: both started before, the first accepting unsigned deliveries from any address."""
    open_host = ghapp("serve", env={"GHAPP_HOST": "0.0.0.0"}, cwd=tmp_path)
    assert open_host.returncode == 2 and "Traceback" not in open_host.stderr
    assert "GITHUB_WEBHOOK_SECRET" in open_host.stderr and "GHAPP_HOST=0.0.0.0" in open_host.stderr
    weak = ghapp("serve", env={"GHAPP_ADMIN_TOKEN": "adm1n"}, cwd=tmp_path)
    assert weak.returncode == 2 and "GHAPP_ADMIN_TOKEN is too weak" in weak.stderr


def test_misspelt_variables_are_named_with_the_closest_known_one(tmp_path):
    (tmp_path / ".env").write_text("GHAPP_WEBHOOK_SECRET=s\n")
    bad = ghapp("serve", env={"GHAPP_MAX_PARALLEL_RUNS": "lots"}, cwd=tmp_path)
    assert "GHAPP_WEBHOOK_SECRET (from .env)" in bad.stderr and "did you mean GITHUB_WEBHOOK_SECRET?" in bad.stderr


def test_log_lines_escape_control_characters():
    """Finding 9: control characters from errors and user input reached the server log raw."""
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "ghapp.x", logging.WARNING, __file__, 1, "ref %s", ("a\nFAKE ERROR\x1b[31m\u202e",), None
    )
    assert formatter.format(record) == "WARNING ref a\\nFAKE ERROR\\x1b[31m\\u202e"
    try:
        raise ValueError("bad\x07")
    except ValueError:
        record = logging.LogRecord("ghapp.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert "\x07" not in text and "\\x07" in text and "\nTraceback" in text


def test_help_lists_the_commands():
    out = ghapp("--help").stdout
    for command in ("serve", "demo", "receive", "migrate", "envs", "destroy"):
        assert command in out
