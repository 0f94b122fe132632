"""Sign in with GitHub to see a preview, in headless Chromium (Debian's, driven by Playwright's async API): the
preview host `<environment>.localhost:<port>` (Chromium resolves `*.localhost` to loopback), ghapp's sign-in and
callback, and the fake GitHub's OAuth pages, with the guard in front of a trivial preview (tests/test_access_http)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.test_access_http import REPO, github, stack  # noqa: F401 - fixtures
from tests.test_browser import browser, console_errors, page  # noqa: F401 - fixtures


async def test_a_reader_signs_in_with_github_and_sees_the_preview(stack, page: Page, db):
    stack.github.sign_in_as("alice")
    await page.goto(stack.url("/cart?item=2"))
    # preview -> ghapp's sign-in -> GitHub's authorize page -> ghapp's callback -> the preview host's session -> back
    await page.wait_for_url(stack.url("/cart?item=2"))
    await expect(page.get_by_role("heading")).to_have_text(f"Hello from {stack.env_name}")
    assert await page.evaluate("document.cookie") == "", "the session cookie is HttpOnly"
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "ghapp_preview")
    assert session["domain"] == f"{stack.env_name}.localhost", "on the preview's own host, not its parent domain"
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert len(stack.github.calls("web/oauth-authorize")) == 1

    # signed in: another page of the preview needs no new trip to GitHub
    await page.goto(stack.url("/other"))
    await expect(page.get_by_role("heading")).to_have_text(f"Hello from {stack.env_name}")
    assert len(stack.github.calls("web/oauth-authorize")) == 1
    assert await db.fetchval("SELECT login FROM access_sessions") == "alice"


async def test_someone_who_cannot_read_the_repository_is_refused_in_the_browser(
    stack,
    page: Page,
    console_errors,
):
    stack.github.sign_in_as("mallory")
    await page.goto(stack.url("/"))
    await expect(page.get_by_role("heading")).to_have_text("No access to this preview")
    await expect(page.get_by_text(f"mallory cannot read {REPO}")).to_be_visible()
    assert not [c for c in await page.context.cookies() if c["name"] == "ghapp_preview"]
    # the browser reports the 403 answer as a console error; that is the one expected
    console_errors[:] = [e for e in console_errors if "403" not in e]
