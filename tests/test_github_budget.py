"""GitHub's rate-limit budget against the strict fake GitHub: conditional GETs (ETags; a 304 is not counted), and
the resync (optional work) held back when an installation's budget is low while check runs still go out."""

from __future__ import annotations

import collections
import json
import secrets

import aiohttp
import pytest

from ghapp.core.repoconfig import PATH
from ghapp.github.client import CACHE_BYTES, GitHubApp, RateBudget, ResponseCache
from ghapp.github.repository import UNREADABLE_TTL, GitHubRepositoryFiles
from ghapp.web import keys
from ghapp.workers.periodic import Resync
from tests.support import WEBHOOKS, environment, fake_sha, wait_for
from tests.test_github_app import INSTALLATION, REPO, REPO_ID, SHA, as_github_app, github, published  # noqa: F401
from tests.test_policy import environment as make_environment

ORG_REPO = "Codertocat/.github"
TOKENS = "apps/create-installation-access-token"


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
    cache = ResponseCache(max_bytes=400)
    cache["a"] = ("etag-a", None, {"x": secrets.token_hex(60)}, None)
    cache["b"] = ("etag-b", None, {"x": secrets.token_hex(60)}, None)
    cache["huge"] = ("etag-h", None, {"x": secrets.token_hex(500)}, None)
    assert "huge" not in cache and "b" in cache
    cache["c"] = ("etag-c", None, {"x": secrets.token_hex(60)}, None)
    assert "a" not in cache and set(cache) == {"b", "c"}


def test_every_repositorys_pull_request_listing_stays_cached_for_the_next_resync():
    """200 repositories' listings of 5 open pull requests each (real pull request objects, ~90 KB of JSON per
    listing, 18 MB in all) stay in the default cache, so the resync's next round sends If-None-Match for each and
    GitHub's 304s cost nothing. Kept as JSON text they did not fit (8 MB) and, walked round-robin, the least
    recently used was always the next one asked for: no 304 in a simulated day (bench/github_budget.py)."""
    pull = json.loads((WEBHOOKS / "pull_request.opened.json").read_text())["pull_request"]
    cache = ResponseCache()
    listings = {
        f"/repos/acme/service-{r}/pulls?state=open": [pull | {"number": r * 10 + n, "id": r * 10 + n} for n in range(5)]
        for r in range(200)
    }
    for url, listing in listings.items():
        cache[url] = (f'W/"{url}"', None, listing, None)
    assert sum(len(json.dumps(listing)) for listing in listings.values()) > 2 * CACHE_BYTES
    for url, listing in listings.items():  # the next round, in the same order
        assert cache[url] == (f'W/"{url}"', None, listing, None)


# --- what a read that cannot succeed costs --------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def files(github):
    """The repository reader on an App whose clock the test moves."""
    async with aiohttp.ClientSession() as session:
        app = GitHubApp(session, str(github.app_id), github.private_key_pem, github.base_url)
        app.clock = Clock(app.clock())
        yield GitHubRepositoryFiles(app)


ENV = make_environment(repository=REPO, repo_id=REPO_ID, installation_id=INSTALLATION, is_fork=False)


def refused(github, operation: str) -> int:
    return sum(1 for c in github.calls(operation) if c.status >= 400)


async def test_an_organisation_without_a_readable_github_repository_is_asked_once_in_a_while(files, github):
    for _ in range(3):
        assert await files.read(ENV, ORG_REPO, PATH, None) is None
    assert refused(github, TOKENS) == 1, "the refused token request is remembered, not made at every resolve"
    files.app.clock.now += UNREADABLE_TTL + 1
    assert await files.read(ENV, ORG_REPO, PATH, None) is None
    assert refused(github, TOKENS) == 2, "after a while it is asked again (a .github repository may exist now)"
    # the pull request's own repository is not affected
    head = github.add_commit(REPO, {PATH: "version: 1\n"}, sha=fake_sha("own"))
    assert (await files.read(ENV, REPO, PATH, head)) is not None


async def test_an_organisation_github_repository_without_the_file_is_read_once_in_a_while(files, github):
    github.add_repo(ORG_REPO)
    github.installations[INSTALLATION].repositories.append(ORG_REPO)
    for _ in range(3):
        assert await files.read(ENV, ORG_REPO, PATH, None) is None
    assert refused(github, "repos/get-content") == 1
    github.add_commit(ORG_REPO, {PATH: "ttl: 24h\n"}, branch="main")
    files.app.clock.now += UNREADABLE_TTL + 1
    found = await files.read(ENV, ORG_REPO, PATH, None)
    assert found is not None and found.text == "ttl: 24h\n", "the file added meanwhile is read after a while"


async def test_the_own_files_absence_is_never_remembered(files, github):
    assert await files.read(ENV, REPO, PATH, fake_sha("none")) is None
    head = github.add_commit(REPO, {PATH: "version: 1\n"}, sha=fake_sha("added"))
    assert (await files.read(ENV, REPO, PATH, head)) is not None
    assert refused(github, "repos/get-content") == 1


async def test_an_installation_without_the_contents_grant_is_asked_once_in_a_while(files, github):
    github.installations[INSTALLATION].permissions.pop("contents")
    head = github.add_commit(REPO, {PATH: "version: 1\n"}, sha=fake_sha("grant"))
    for _ in range(3):
        assert await files.read(ENV, REPO, PATH, head) is None
        assert await files.read(ENV, ORG_REPO, PATH, None) is None
    assert refused(github, TOKENS) == 1
    github.installations[INSTALLATION].permissions["contents"] = "read"  # an owner accepted it
    files.app.clock.now += UNREADABLE_TTL + 1
    assert (await files.read(ENV, REPO, PATH, head)) is not None


# --- the calls of one environment's life ----------------------------------------------------------------------------

PUSHES = 3
# (at least, at most) calls per operation of open, 3 pushes and close, on a repository without .github/preview.yml
# in an organisation without a .github repository. The bounds differ by the progress states the publisher sees:
# a fast apply may go from queued to active before the publisher shows "deploying" (docs/benchmarks.md lists them).
LIFECYCLE = {
    # one to read content, one to report (each narrowed to the repository, renewed hourly), and one refused for the
    # organisation's `.github` repository (there is none), then remembered: not asked again at every push
    TOKENS: (3, 3),
    # .github/preview.yml at each commit, and the base branch's, which bounds `access` (a free 304 while it exists
    # unchanged; here there is none: a counted 404 each time)
    "repos/get-content": (2 * (1 + PUSHES), 2 * (1 + PUSHES)),
    "checks/create": (1 + PUSHES, 1 + PUSHES),
    "checks/update": (1 + PUSHES, 2 * (1 + PUSHES)),  # in progress (if seen), completed
    "issues/list-comments": (1, 1),  # the sticky comment is looked for once, before it is first written
    "issues/create-comment": (1, 1),
    "issues/update-comment": (1 + PUSHES, 2 + 3 * PUSHES + 2),
    "repos/create-deployment": (1 + PUSHES, 1 + PUSHES),
    "repos/create-deployment-status": (1 + PUSHES + 1, 2 * (1 + PUSHES) + 1),  # in progress, success; inactive
}


async def test_the_calls_of_an_environments_life_are_these_and_no_more(start_app, deliveries, db, github):
    client = await as_github_app(start_app, github)()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _deployed(db, env_id, SHA), what="the first apply published")
    for n in range(PUSHES):
        sha = fake_sha("lifecycle", n)
        github.pulls[(REPO.lower(), 2)].head_sha = sha
        await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=sha))
        await wait_for(lambda sha=sha: _deployed(db, env_id, sha), what=f"push {n} published")
    github.pulls[(REPO.lower(), 2)].state = "closed"
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    await wait_for(lambda: _destroyed(db, env_id), what="the destroy published")

    counted = collections.Counter(github.call_counts())
    assert set(counted) == set(LIFECYCLE), counted
    for operation, (least, most) in LIFECYCLE.items():
        assert least <= counted[operation] <= most, (operation, counted[operation])
    assert [c.operation_id for c in github.calls() if c.status >= 400 and c.operation_id != "repos/get-content"] == [
        TOKENS
    ], "one refused token request for the organisation's missing .github, not one per push"


async def _deployed(db, env_id: int, sha: str):
    env = await published(db, env_id)
    return env if env and env["status"] == "active" and env["deployed_sha"] == sha else None


async def _destroyed(db, env_id: int):
    env = await published(db, env_id)
    return env if env and env["status"] == "destroyed" else None
