"""GitHub's rate-limit budget against the strict fake GitHub: conditional GETs (ETags; a 304 is not counted), and
the resync (optional work) held back when an installation's budget is low while check runs still go out."""

from __future__ import annotations

import aiohttp
import pytest

from ghapp.github.client import GitHubApp, RateBudget, ResponseCache
from ghapp.web import keys
from ghapp.workers.periodic import Resync
from tests.support import environment, fake_sha, wait_for
from tests.test_github_app import INSTALLATION, REPO, REPO_ID, SHA, github  # noqa: F401 - the fixture


@pytest.fixture
def online(settings, github):
    return settings.replace(
        app_id=str(github.app_id), private_key=github.private_key_pem, github_api_url=github.base_url
    )


async def post(client, deliveries, event, data) -> dict:
    body, headers = deliveries.signed(event, data)
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status in (200, 202), await resp.text()
    return await resp.json()


async def test_a_second_resync_of_unchanged_pull_requests_costs_no_counted_call(start_app, online, deliveries, github):
    client = await start_app(workers=False, **_github_settings(online))
    await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    async with aiohttp.ClientSession() as session:
        resync = Resync(
            client.app[keys.POOL], GitHubApp(session, online.app_id, online.private_key, online.github_api_url), online
        )
        assert (await resync.once())["repositories"] == 1
        counted, not_modified = github.call_counts(), github.not_modified_counts()
        assert counted.get("pulls/list") == 1

        assert await resync.once() == {"repositories": 1, "closed": 0, "updated": 0, "errors": 0, "throttled": 0}

        assert github.call_counts() == counted, "the second pass must be answered by 304s only"
        assert github.not_modified_counts().get("pulls/list", 0) == not_modified.get("pulls/list", 0) + 1

        github.pulls[(REPO.lower(), 2)].head_sha = fake_sha("missed")  # a change: the listing is fetched again
        assert (await resync.once())["updated"] == 1
        assert github.call_counts()["pulls/list"] == 2


async def test_a_low_budget_holds_the_resync_back_but_check_runs_still_go_out(
    start_app, online, deliveries, github, db
):
    github.set_rate_limit(300)  # every installation and the App: far below the reserve
    client = await start_app(rate_reserve=1000, **_github_settings(online))
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _check_run(github, SHA, "completed"), what="the check run of the first apply")
    app_client = client.app[keys.GITHUB]
    assert app_client.budget.remaining(INSTALLATION) is not None, "the budget was read from GitHub's answers"
    calls = github.call_counts()

    counts = await Resync(db, app_client, online.replace(rate_reserve=1000)).once()

    assert (counts["throttled"], counts["repositories"]) == (1, 0)
    pulls = {op: n for op, n in github.call_counts().items() if op.startswith("pulls/")}
    assert pulls == {op: n for op, n in calls.items() if op.startswith("pulls/")} == {}, "no listing was asked for"
    assert "pulls/list" not in github.not_modified_counts()
    # what a person waits for is never held back: a push still gets its check run, created and completed
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fake_sha("push")))
    await wait_for(lambda: _check_run(github, fake_sha("push"), "completed"), what="the check run of the push")
    assert (await environment(db, env_id))["deployed_sha"] == fake_sha("push")


async def _check_run(github, sha: str, status: str):
    return [r for r in github.check_runs(REPO) if r["head_sha"] == sha and r["status"] == status]


def _github_settings(online) -> dict:
    return {k: getattr(online, k) for k in ("app_id", "private_key", "github_api_url")}


def test_the_budget_is_forgotten_when_its_window_resets():
    budget = RateBudget()
    assert budget.remaining(1) is None
    budget.observe(1, {"x-ratelimit-remaining": "42", "x-ratelimit-reset": "1000"})
    budget.observe(1, {"x-ratelimit-remaining": "not a number"})
    assert budget.remaining(1, now=999) == 42
    assert budget.remaining(1, now=1000) is None
    assert budget.remaining(2, now=999) is None


def test_the_response_cache_is_bounded_by_size_and_skips_what_does_not_fit():
    cache = ResponseCache(max_bytes=150)
    cache["a"] = ("etag-a", None, {"x": "y" * 40}, None)
    cache["b"] = ("etag-b", None, {"x": "y" * 40}, None)
    cache["huge"] = ("etag-h", None, {"x": "y" * 500}, None)
    assert "huge" not in cache and "b" in cache
    cache["c"] = ("etag-c", None, {"x": "y" * 40}, None)
    assert "a" not in cache and set(cache) == {"b", "c"}
