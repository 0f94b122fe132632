"""The dashboard in headless Chromium (Debian's `chromium` driven by Playwright's async API), against the whole
app: real deliveries, real Terraform runs, real previews (terraform/local) for force destroy.

`GHAPP_SCREENSHOT=docs/dashboard.png pytest tests/test_browser.py -k real_run` refreshes the README's picture."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import LOCAL_MODULE
from tests.support import Deliveries, environment, fake_sha, preview_port_base, processes_with, wait_for
from tests.test_dashboard import TOKEN, seed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> Browser:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing; the browser tests need Debian's chromium: apt-get install -y chromium",
            pytrace=False,
        )
    playwright = await async_playwright().start()
    try:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
    finally:
        await playwright.stop()


@pytest.fixture
def console_errors() -> list[str]:
    """JavaScript and console errors of the page; a test that provokes some removes those it expects."""
    return []


@pytest.fixture
async def page(browser, console_errors) -> Page:
    """A fresh browser context; the test fails on any JavaScript error or console error (a CSP violation too)."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    page.on("pageerror", lambda e: console_errors.append(f"page error: {e}"))
    page.on("console", lambda m: console_errors.append(f"console: {m.text}") if m.type == "error" else None)
    yield page
    await context.close()
    assert not console_errors


def pr_event(
    deliveries: Deliveries,
    action: str,
    number: int,
    repository: str,
    title: str,
    author: str,
    branch: str,
    sha: str | None = None,
) -> dict:
    """A real `pull_request` delivery moved to another repository, PR, title, author and branch."""
    data = deliveries.pull_request(
        action, number=number, repository=repository, sha=sha, repo_id=int(fake_sha(repository)[:8], 16)
    )
    pr = data["pull_request"]
    pr["title"], pr["user"]["login"], pr["head"]["ref"] = title, author, branch
    pr["html_url"] = f"https://github.com/{repository}/pull/{number}"
    return data


async def deliver(client, deliveries: Deliveries, data: dict) -> int:
    body, headers = deliveries.signed("pull_request", data)
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    return (await resp.json())["environment_id"]


async def status_is(db, env_id: int, status: str, converged: bool = True):
    env = await environment(db, env_id)
    return (
        env
        if env.get("status") == status and (not converged or env["observed_generation"] == env["generation"])
        else None
    )


async def sign_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/login")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")
    assert await page.get_by_text("Signed in as operator").is_visible()


async def test_list_shows_environments_from_a_real_run(start_app, deliveries, db, page, tmp_path):
    marker = tmp_path / "fail"
    marker.touch()
    tf_env = {"TF_VAR_fail_marker": str(marker)}
    client = await start_app(admin_token=TOKEN, max_attempts=1, terraform_env=tf_env)
    failed = await deliver(
        client, deliveries, pr_event(deliveries, "opened", 31, "acme/api", "Retry payments", "bob", "retry-payments")
    )
    await wait_for(lambda: status_is(db, failed, "failed", converged=False), what="failed")
    marker.unlink()
    first = await deliver(
        client, deliveries, pr_event(deliveries, "opened", 12, "acme/web", "New checkout page", "alice", "checkout")
    )
    closed = await deliver(
        client, deliveries, pr_event(deliveries, "opened", 14, "acme/web", "Dark mode", "carol", "dark-mode")
    )
    active = await deliver(
        client,
        deliveries,
        pr_event(deliveries, "opened", 35, "acme/api", "Rate limits <per key>", "dave", "rate-limits"),
    )
    for env_id in (first, closed, active):
        await wait_for(lambda env_id=env_id: status_is(db, env_id, "active"), what="active")
    await deliver(client, deliveries, pr_event(deliveries, "closed", 14, "acme/web", "Dark mode", "carol", "dark-mode"))
    await wait_for(lambda: status_is(db, closed, "destroyed"), what="destroyed")
    await client.close()

    # the same database under a slower Terraform: one PR settling after a push, one being created
    client = await start_app(
        admin_token=TOKEN,
        max_attempts=1,
        push_settle=60,
        shutdown_grace=0.5,
        terraform_env={**tf_env, "TF_VAR_delay": "60"},
    )
    await deliver(
        client,
        deliveries,
        pr_event(
            deliveries, "synchronize", 12, "acme/web", "New checkout page", "alice", "checkout", sha=fake_sha("push")
        ),
    )
    creating = await deliver(
        client, deliveries, pr_event(deliveries, "opened", 16, "acme/web", "Search filters", "erin", "search")
    )
    await wait_for(lambda: status_is(db, creating, "creating", converged=False), what="creating")
    await wait_for(lambda: status_is(db, first, "pending", converged=False), what="pending")

    base = str(client.make_url("")).rstrip("/")
    await page.goto(f"{base}/")
    rows = page.locator("table.envs tbody tr")
    assert await rows.count() == 5
    expected = {first: "pending", closed: "destroyed", failed: "failed", active: "active", creating: "creating"}
    for env_id, status in expected.items():
        row = page.locator(f'tr[data-id="{env_id}"]')
        badge = row.locator(".status")
        assert (await badge.inner_text()).split()[-1] == status
        assert f"s-{status}" in await badge.get_attribute("class")
    row = page.locator(f'tr[data-id="{active}"]')
    env = await environment(db, active)
    assert await row.get_by_role("link", name="#35").get_attribute("href") == "https://github.com/acme/api/pull/35"
    assert (
        await row.get_by_role("link", name=env["deployed_sha"][:7]).get_attribute("href")
        == f"https://github.com/acme/api/commit/{env['deployed_sha']}"
    )
    shown = f"http://{env['name']}.localhost:8081/"  # through the gateway (GHAPP_GATEWAY_PORT's default)
    assert await row.get_by_role("link", name=shown).get_attribute("href") == shown
    assert "Rate limits <per key>" in await row.inner_text()
    assert "dave" in await row.inner_text() and "in 2d" in await row.inner_text()

    await page.get_by_label("Status", exact=True).select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**/?status=failed*")
    assert await rows.count() == 1 and await page.locator(f'tr[data-id="{failed}"]').count() == 1

    await sign_in(page, base)
    await page.set_viewport_size({"width": 1440, "height": 520})
    shot = await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if target := os.environ.get("GHAPP_SCREENSHOT"):
        Path(target).write_bytes(shot)


async def test_live_log_appears_while_the_run_is_going(start_app, deliveries, db, page):
    client = await start_app(terraform_env={"TF_VAR_delay": "13"})
    env_id = await deliver(client, deliveries, deliveries.pull_request("opened"))
    run = await wait_for(lambda: _running_run(db, env_id), what="the apply to start")

    await page.goto(str(client.make_url(f"/environments/{env_id}")))
    await page.evaluate("() => { window.notReloaded = true; }")
    log = page.locator("#log")
    assert await log.get_attribute("data-live") == "true"
    assert "Still creating" not in await log.inner_text()

    # Terraform says "Still creating... [10s elapsed]" only while a resource is being created: 10 s into this run
    await expect(log).to_contain_text("Still creating", timeout=25_000)
    assert await db.fetchval("SELECT state FROM runs WHERE id = $1", run) == "running"
    assert await page.locator("#env-status").inner_text() == "▶ creating"

    await expect(log).to_contain_text("Apply complete!", timeout=25_000)
    await expect(page.locator("#env-status")).to_have_text("● active")
    await expect(page.locator("#run-state")).to_have_text("succeeded")
    await expect(page.locator("#log-note")).to_have_text("Run succeeded.")
    assert await page.evaluate("() => window.notReloaded") is True


async def test_live_log_falls_back_to_polling_when_the_stream_is_cut(start_app, deliveries, db, page, console_errors):
    client = await start_app(terraform_env={"TF_VAR_delay": "4"})
    env_id = await deliver(client, deliveries, deliveries.pull_request("opened"))
    await wait_for(lambda: _running_run(db, env_id), what="the apply to start")
    streams: list[str] = []
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/log?after=" in r.url else None)

    async def cut(route):
        streams.append(route.request.url)
        await route.abort()

    await page.route("**/stream*", cut)

    await page.goto(str(client.make_url(f"/environments/{env_id}")))
    await page.evaluate("() => { window.notReloaded = true; }")
    await expect(page.locator("#log")).to_contain_text("Apply complete!", timeout=25_000)
    await expect(page.locator("#env-status")).to_have_text("● active")
    assert streams and polls and await page.evaluate("() => window.notReloaded") is True
    assert set(console_errors) == {"console: Failed to load resource: net::ERR_FAILED"}
    console_errors.clear()


async def _running_run(db, env_id):
    return await db.fetchval("SELECT id FROM runs WHERE environment_id = $1 AND state = 'running'", env_id)


@pytest.fixture
def local_previews(settings):
    """terraform/local as the module; whatever previews are left at the end are killed."""
    port_base = preview_port_base()
    yield {"terraform_module": LOCAL_MODULE, "terraform_env": {"TF_VAR_port_base": str(port_base)}}
    for pid in processes_with(str(settings.data_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


async def test_operator_force_destroys_and_the_preview_process_is_gone(start_app, deliveries, db, page, local_previews):
    client = await start_app(admin_token=TOKEN, **local_previews)
    env_id = await deliver(client, deliveries, deliveries.pull_request("opened"))
    env = await wait_for(lambda: status_is(db, env_id, "active"), timeout=60, what="active")
    assert supervisors(env["name"]), "the preview process should be running"
    assert await answers(env["preview_url"])

    base = str(client.make_url("")).rstrip("/")
    await sign_in(page, base)
    button = page.locator(f'tr[data-id="{env_id}"]').get_by_role("button", name="Force destroy")

    page.once("dialog", lambda dialog: dialog.dismiss())  # changed one's mind
    await button.click()
    await page.wait_for_timeout(300)
    assert (await environment(db, env_id))["desired"] == "present"

    questions: list[str] = []

    async def accept(dialog):
        questions.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    async with page.expect_navigation():
        await button.click()
    assert questions == [f"Force destroy {env['name']} (Codertocat/Hello-World#2)?"]

    await wait_for(lambda: status_is(db, env_id, "destroyed"), timeout=60, what="destroyed")
    await wait_for(lambda: _none(supervisors(env["name"])), timeout=10, what="the preview process to exit")
    assert not await answers(env["preview_url"])
    await page.reload()
    row = page.locator(f'tr[data-id="{env_id}"]')
    assert (await row.locator(".status").inner_text()).split()[-1] == "destroyed"
    assert await row.get_by_role("button", name="Force destroy").count() == 0


def supervisors(env_name: str) -> list[int]:
    return processes_with("preview.py supervise", f"/{env_name}")


async def _none(found):
    return not found


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=3)) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def test_a_visitor_cannot_destroy(start_app, db, page):
    client = await start_app(admin_token=TOKEN, workers=False)
    (env_id,) = await seed(db)
    base = str(client.make_url("")).rstrip("/")

    await page.goto(f"{base}/")
    assert await page.locator(f'tr[data-id="{env_id}"]').count() == 1
    assert await page.get_by_role("button", name="Force destroy").count() == 0
    assert await page.get_by_role("button", name="Redeploy").count() == 0
    assert await page.get_by_role("link", name="Sign in").is_visible()
    await page.goto(f"{base}/environments/{env_id}")
    assert await page.get_by_role("button", name="Force destroy").count() == 0

    forged = await page.request.post(
        f"{base}/environments/{env_id}/destroy", form={"confirmed": "yes", "csrf_token": "guess"}
    )
    assert forged.status == 401
    api = await page.request.post(f"{base}/api/environments/{env_id}/destroy")
    assert api.status == 401
    api = await page.request.post(
        f"{base}/api/environments/{env_id}/destroy", headers={"Authorization": "Bearer guess"}
    )
    assert api.status == 403
    assert (await environment(db, env_id))["desired"] == "present"
