"""The fake GitHub itself: spec-valid flows work end to end through gidgethub, and it is as strict as GitHub."""

from __future__ import annotations

import datetime as dt
import time

import aiohttp
import gidgethub
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI

from tests.fake_github import FakeGitHub, fake_github  # noqa: F401  (the fixture)
from tests.support import fake_sha

REPO = "octo-org/hello"
INSTALLATION = 77


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


def app_gh(fake: FakeGitHub, session, token: str | None = None) -> GitHubAPI:
    return GitHubAPI(session, "ghapp-tests", oauth_token=token, base_url=fake.base_url)


def app_jwt(fake: FakeGitHub) -> str:
    return apps.get_jwt(app_id=str(fake.app_id), private_key=fake.private_key_pem)


async def installation_gh(fake: FakeGitHub, session, installation_id: int = INSTALLATION) -> GitHubAPI:
    token = await apps.get_installation_access_token(
        app_gh(fake, session),
        installation_id=str(installation_id),
        app_id=str(fake.app_id),
        private_key=fake.private_key_pem,
    )
    return app_gh(fake, session, token["token"])


def setup_repo(fake: FakeGitHub) -> None:
    fake.add_installation(INSTALLATION, "octo-org", repos=[REPO, "octo-org/other"])
    fake.add_pull(REPO, 7, head_sha=fake_sha(7), head_ref="feature", user="alice")


async def test_app_flow_end_to_end(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    fake.set_permission(REPO, "alice", "write")
    jwt_gh = app_gh(fake, session)

    app = await jwt_gh.getitem("/app", jwt=app_jwt(fake))
    assert (app["id"], app["slug"]) == (fake.app_id, fake.slug)
    installation = await jwt_gh.getitem(f"/repos/{REPO}/installation", jwt=app_jwt(fake))
    assert installation["id"] == INSTALLATION and installation["account"]["login"] == "octo-org"
    token = await apps.get_installation_access_token(
        jwt_gh, installation_id=str(INSTALLATION), app_id=str(fake.app_id), private_key=fake.private_key_pem
    )
    assert token["token"].startswith("ghs_") and token["expires_at"].endswith("Z")
    gh = app_gh(fake, session, token["token"])

    pull = await gh.getitem(f"/repos/{REPO}/pulls/7")
    assert (pull["head"]["sha"], pull["head"]["ref"], pull["user"]["login"]) == (fake_sha(7), "feature", "alice")
    permission = await gh.getitem(f"/repos/{REPO}/collaborators/alice/permission")
    assert (permission["permission"], permission["role_name"]) == ("write", "write")

    run = await gh.post(
        f"/repos/{REPO}/check-runs",
        data={
            "name": "preview",
            "head_sha": fake_sha(7),
            "status": "in_progress",
            "external_id": "env-1",
            "details_url": "https://ghapp.example.com/envs/1",
            "output": {"title": "Applying", "summary": "Terraform is applying"},
            "actions": [{"label": "Destroy", "description": "Destroy the preview", "identifier": "destroy"}],
        },
    )
    assert run["conclusion"] is None and [p["number"] for p in run["pull_requests"]] == [7]
    await gh.patch(
        f"/repos/{REPO}/check-runs/{run['id']}",
        data={"conclusion": "success", "output": {"title": "Ready", "summary": "Up", "text": "log"}},
    )
    listed = await gh.getitem(f"/repos/{REPO}/commits/{fake_sha(7)}/check-runs")
    assert [(r["status"], r["conclusion"]) for r in listed["check_runs"]] == [("completed", "success")]

    comment = await gh.post(f"/repos/{REPO}/issues/7/comments", data={"body": "Preview: starting"})
    assert comment["user"]["login"] == f"{fake.slug}[bot]" and comment["user"]["type"] == "Bot"
    await gh.patch(f"/repos/{REPO}/issues/comments/{comment['id']}", data={"body": "Preview: ready"})
    human = fake.add_comment(REPO, 7, "/preview destroy", user="alice")
    await gh.post(f"/repos/{REPO}/issues/comments/{human['id']}/reactions", data={"content": "eyes"})

    deployment = await gh.post(
        f"/repos/{REPO}/deployments",
        data={
            "ref": "feature",
            "environment": "pr-7",
            "transient_environment": True,
            "required_contexts": [],
            "auto_merge": False,
            "payload": {"pr": 7},
        },
    )
    assert deployment["sha"] == fake_sha(7)
    await gh.post(
        f"/repos/{REPO}/deployments/{deployment['id']}/statuses",
        data={"state": "success", "environment_url": "https://pr-7.example.com"},
    )
    found = await gh.getitem(f"/repos/{REPO}/deployments?environment=pr-7&sha={fake_sha(7)}")
    assert [d["id"] for d in found] == [deployment["id"]]
    await gh.post(f"/repos/{REPO}/statuses/{fake_sha(7)}", data={"state": "success", "context": "preview"})
    combined = await gh.getitem(f"/repos/{REPO}/commits/{fake_sha(7)}/status")
    assert (combined["state"], combined["total_count"]) == ("success", 1)
    await gh.post(f"/repos/{REPO}/deployments/{deployment['id']}/statuses", data={"state": "inactive"})
    await gh.delete(f"/repos/{REPO}/deployments/{deployment['id']}")
    await gh.delete(f"/repos/{REPO}/issues/comments/{comment['id']}")

    fake.assert_operations(
        [
            "apps/get-authenticated",
            "apps/get-repo-installation",
            "apps/create-installation-access-token",
            "pulls/get",
            "repos/get-collaborator-permission-level",
            "checks/create",
            "checks/update",
            "checks/list-for-ref",
            "issues/create-comment",
            "issues/update-comment",
            "reactions/create-for-issue-comment",
            "repos/create-deployment",
            "repos/create-deployment-status",
            "repos/list-deployments",
            "repos/create-commit-status",
            "repos/get-combined-status-for-ref",
            "repos/create-deployment-status",
            "repos/delete-deployment",
            "issues/delete-comment",
        ]
    )
    [stored] = fake.check_runs(REPO)
    assert stored["external_id"] == "env-1" and stored["details_url"] == "https://ghapp.example.com/envs/1"
    assert stored["output"]["text"] == "log" and stored["actions"][0]["identifier"] == "destroy"
    assert stored["completed_at"] and stored["started_at"]
    assert [c["body"] for c in fake.comments(REPO, 7)] == ["/preview destroy"]
    assert [r["content"] for r in fake.reactions(human["id"])] == ["eyes"]
    assert fake.deployments(REPO) == []
    assert [s["context"] for s in fake.statuses(REPO, fake_sha(7))] == ["preview"]
    call = fake.calls("checks/create")[0]
    assert (call.installation_id, call.token, call.json["name"]) == (INSTALLATION, token["token"], "preview")
    assert fake.violations == []


async def test_responses_carry_github_headers(fake_github, session):
    setup_repo(fake_github)
    gh = await installation_gh(fake_github, session)
    async with session.get(
        f"{fake_github.base_url}/repos/{REPO}/pulls/7", headers={"Authorization": f"token {gh.oauth_token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert int(response.headers["x-ratelimit-remaining"]) == int(response.headers["x-ratelimit-limit"]) - 1
        assert int(response.headers["x-ratelimit-reset"]) > 0 and response.headers["x-github-request-id"]


async def test_invalid_requests_are_violations(session):
    async with FakeGitHub() as fake:
        setup_repo(fake)
        gh = await installation_gh(fake, session)
        with pytest.raises(gidgethub.BadRequest) as bad_status:
            await gh.post(f"/repos/{REPO}/check-runs", data={"name": "x", "head_sha": fake_sha(7), "status": "done"})
        with pytest.raises(gidgethub.BadRequest):
            await gh.post(f"/repos/{REPO}/check-runs", data={"name": "x"})
        run = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "x", "head_sha": fake_sha(7)})
        with pytest.raises(gidgethub.BadRequest):  # GitHub needs a conclusion for a completed run
            await gh.patch(f"/repos/{REPO}/check-runs/{run['id']}", data={"status": "completed"})
        with pytest.raises(gidgethub.BadRequest) as unknown:
            await gh.getitem(f"/repos/{REPO}/branches")
        with pytest.raises(gidgethub.BadRequest):
            await gh.getitem(f"/repos/{REPO}/pulls?state=merged")

        assert bad_status.value.status_code == 422 and unknown.value.status_code == 404
        assert len(fake.violations) == 5, fake.violations
        assert "'done' is not one of" in fake.violations[0]
        assert "'head_sha' is a required property" in fake.violations[1]
        assert "no operation" in fake.violations[3] and "state" in fake.violations[4]
        assert fake.operations()[-1] == "pulls/list" and fake.calls()[-2].operation_id is None
        with pytest.raises(AssertionError, match="fake GitHub found problems"):
            fake.verify()


async def test_expectations_unmet_and_unexpected(session):
    async with FakeGitHub() as fake:
        setup_repo(fake)
        fake.expect("apps/create-installation-access-token")
        fake.expect("pulls/get", count=None)
        fake.expect("checks/create", count=2)
        gh = await installation_gh(fake, session)
        await gh.getitem(f"/repos/{REPO}/pulls/7")
        await gh.getitem(f"/repos/{REPO}/pulls/7")
        await gh.post(f"/repos/{REPO}/statuses/{fake_sha(7)}", data={"state": "pending"})
        assert fake.problems() == [
            f"POST /repos/{REPO}/statuses/{fake_sha(7)} (repos/create-commit-status): unexpected call: "
            "the test did not expect this operation",
            "expected 2 call(s) of checks/create, got 0",
        ]
        with pytest.raises(ValueError):
            fake.expect("checks/create-run")


async def test_authentication_failures(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    gh = await installation_gh(fake, session)
    anonymous = app_gh(fake, session)
    for attempt in (
        anonymous.getitem(f"/repos/{REPO}/pulls/7"),
        app_gh(fake, session, "ghs_not-a-token").getitem(f"/repos/{REPO}/pulls/7"),
        anonymous.getitem("/app"),
        gh.getitem("/app"),  # an installation token where a JWT is needed
        anonymous.getitem("/app", jwt=apps.get_jwt(app_id="1", private_key=fake.private_key_pem)),
    ):
        with pytest.raises(gidgethub.BadRequest) as error:
            await attempt
        assert error.value.status_code == 401
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(  # not the App's key
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(gidgethub.BadRequest, match="JSON web token"):
        await anonymous.getitem("/app", jwt=apps.get_jwt(app_id=str(fake.app_id), private_key=pem))
    too_long = jwt.encode({"iat": 0, "exp": 2**31, "iss": str(fake.app_id)}, fake.private_key_pem, algorithm="RS256")
    with pytest.raises(gidgethub.BadRequest):
        await anonymous.getitem("/app", jwt=too_long)

    assert (await gh.getitem(f"/repos/{REPO}/pulls/7"))["number"] == 7
    fake.expire_tokens()
    with pytest.raises(gidgethub.BadRequest) as expired:
        await gh.getitem(f"/repos/{REPO}/pulls/7")
    assert expired.value.status_code == 401
    fresh = await installation_gh(fake, session)  # refreshing works
    assert (await fresh.getitem(f"/repos/{REPO}/pulls/7"))["number"] == 7
    assert fake.violations == []


async def test_token_lifetime_is_configurable(session):
    async with FakeGitHub(token_lifetime=0) as fake:
        setup_repo(fake)
        gh = await installation_gh(fake, session)
        with pytest.raises(gidgethub.BadRequest) as expired:
            await gh.getitem(f"/repos/{REPO}/pulls/7")
        assert expired.value.status_code == 401 and fake.problems() == []
    async with FakeGitHub() as fake:
        setup_repo(fake)
        before = time.time()
        token = await apps.get_installation_access_token(
            app_gh(fake, session),
            installation_id=str(INSTALLATION),
            app_id=str(fake.app_id),
            private_key=fake.private_key_pem,
        )
        expires = dt.datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00")).timestamp()
        assert before + 3600 - 2 <= expires <= time.time() + 3600


async def test_tokens_expire_on_the_fakes_clock(fake_github, session):
    """A benchmark of a simulated day moves the fake's clock: a token lives its hour of that clock."""
    fake = fake_github
    setup_repo(fake)
    now = time.time()
    fake.clock = lambda: now
    gh = await installation_gh(fake, session)
    assert (await gh.getitem(f"/repos/{REPO}/pulls/7"))["number"] == 7
    fake.clock = lambda: now + 3601
    with pytest.raises(gidgethub.BadRequest) as expired:
        await gh.getitem(f"/repos/{REPO}/pulls/7")
    assert expired.value.status_code == 401
    assert (await (await installation_gh(fake, session)).getitem(f"/repos/{REPO}/pulls/7"))["number"] == 7


async def test_narrowed_tokens_are_enforced(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    fake.add_pull("octo-org/other", 1)
    jwt_gh = app_gh(fake, session)
    narrowed = await jwt_gh.post(
        f"/app/installations/{INSTALLATION}/access_tokens",
        jwt=app_jwt(fake),
        data={"repositories": ["hello"], "permissions": {"pull_requests": "read"}},
    )
    assert [r["full_name"] for r in narrowed["repositories"]] == [REPO]
    assert fake.tokens[-1].repositories == {REPO}
    assert fake.tokens[-1].permissions == {"metadata": "read", "pull_requests": "read"}
    gh = app_gh(fake, session, narrowed["token"])
    assert (await gh.getitem(f"/repos/{REPO}/pulls/7"))["number"] == 7
    with pytest.raises(gidgethub.BadRequest) as other_repo:
        await gh.getitem("/repos/octo-org/other/pulls/1")
    with pytest.raises(gidgethub.BadRequest) as no_permission:
        await gh.post(f"/repos/{REPO}/issues/7/comments", data={"body": "hi"})
    assert other_repo.value.status_code == no_permission.value.status_code == 403
    by_id = await jwt_gh.post(
        f"/app/installations/{INSTALLATION}/access_tokens",
        jwt=app_jwt(fake),
        data={"repository_ids": [fake.repos["octo-org/other"].id]},
    )
    assert fake.tokens[-1].repositories == {"octo-org/other"} and by_id["repository_selection"] == "selected"
    with pytest.raises(gidgethub.BadRequest) as outside:
        await jwt_gh.post(
            f"/app/installations/{INSTALLATION}/access_tokens",
            jwt=app_jwt(fake),
            data={"repositories": ["not-installed"]},
        )
    assert outside.value.status_code == 422
    installation_repos = [
        r["full_name"]
        async for r in app_gh(fake, session, by_id["token"]).getiter(
            "/installation/repositories", iterable_key="repositories"
        )
    ]
    assert installation_repos == ["octo-org/other"]


async def test_pagination_follows_link_headers(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    for number in range(8, 13):
        fake.add_pull(REPO, number, state="closed" if number % 2 else "open")
    gh = await installation_gh(fake, session)
    numbers = [p["number"] async for p in gh.getiter(f"/repos/{REPO}/pulls?state=all&per_page=2")]
    assert numbers == [12, 11, 10, 9, 8, 7]
    assert [c.query.get("page") for c in fake.calls("pulls/list")] == [None, "2", "3"]
    open_pulls = [p["number"] async for p in gh.getiter(f"/repos/{REPO}/pulls?per_page=100")]
    assert open_pulls == [12, 10, 8, 7]

    async with session.get(
        f"{fake.base_url}/repos/{REPO}/pulls?state=all&per_page=2&page=2",
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as response:
        link = response.headers["Link"]
    assert link == ", ".join(
        f'<{fake.base_url}/repos/{REPO}/pulls?state=all&per_page=2&page={page}>; rel="{rel}"'
        for page, rel in ((1, "prev"), (3, "next"), (3, "last"), (1, "first"))
    )

    for n in range(35):
        fake.add_comment(REPO, 7, f"comment {n}")
    bodies = [c["body"] async for c in gh.getiter(f"/repos/{REPO}/issues/7/comments")]
    assert bodies == [f"comment {n}" for n in range(35)] and len(fake.calls("issues/list-comments")) == 2


async def test_failure_injection(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    gh = await installation_gh(fake, session)
    url = f"/repos/{REPO}/pulls/7"

    fake.fail("pulls/get", 502, times=2)
    for _ in range(2):
        with pytest.raises(gidgethub.GitHubBroken):
            await gh.getitem(url)
    assert (await gh.getitem(url))["number"] == 7

    fake.fail("pulls/get", 429, headers={"Retry-After": "7"})
    with pytest.raises(gidgethub.BadRequest) as too_many:
        await gh.getitem(url)
    assert too_many.value.status_code == 429 and too_many.value.headers["Retry-After"] == "7"

    fake.fail(None, 403, rate_limit="secondary")
    with pytest.raises(gidgethub.BadRequest, match="secondary rate limit") as secondary:
        await gh.getitem(url)
    assert secondary.value.headers["retry-after"] == "1"
    assert int(secondary.value.headers["x-ratelimit-remaining"]) > 0

    fake.fail("pulls/get", 403, rate_limit="primary")
    with pytest.raises(gidgethub.RateLimitExceeded) as primary:
        await gh.getitem(url)
    assert primary.value.rate_limit.remaining == 0

    await fake.down()
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.getitem(url)
    await fake.down(refuse=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await gh.getitem(url)
    await fake.up()
    assert (await gh.getitem(url))["number"] == 7
    assert [c.status for c in fake.calls("pulls/get")] == [502, 502, 200, 429, 403, 403, 503, 200]


async def test_rate_limit_runs_out(session):
    async with FakeGitHub(rate_limit=3) as fake:
        setup_repo(fake)
        gh = await installation_gh(fake, session)  # the App's JWT has a bucket of its own
        for _ in range(3):
            await gh.getitem(f"/repos/{REPO}/pulls/7")
        assert gh.rate_limit.remaining == 0
        with pytest.raises(gidgethub.RateLimitExceeded):
            await gh.getitem(f"/repos/{REPO}/pulls/7")
        assert fake.problems() == []


async def test_deployment_rules(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    gh = await installation_gh(fake, session)
    run = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "preview", "head_sha": fake_sha(7)})
    with pytest.raises(gidgethub.BadRequest) as pending_checks:  # GitHub checks every context by default
        await gh.post(f"/repos/{REPO}/deployments", data={"ref": fake_sha(7), "environment": "pr-7"})
    assert pending_checks.value.status_code == 409
    await gh.patch(f"/repos/{REPO}/check-runs/{run['id']}", data={"conclusion": "success"})
    first = await gh.post(f"/repos/{REPO}/deployments", data={"ref": fake_sha(7), "environment": "pr-7"})
    second = await gh.post(f"/repos/{REPO}/deployments", data={"ref": "main", "environment": "staging"})
    await gh.post(f"/repos/{REPO}/deployments/{first['id']}/statuses", data={"state": "success"})
    with pytest.raises(gidgethub.BadRequest) as active:
        await gh.delete(f"/repos/{REPO}/deployments/{first['id']}")
    assert active.value.status_code == 422
    await gh.post(f"/repos/{REPO}/deployments/{first['id']}/statuses", data={"state": "inactive"})
    await gh.delete(f"/repos/{REPO}/deployments/{first['id']}")
    await gh.delete(f"/repos/{REPO}/deployments/{second['id']}")  # the only deployment left
    assert fake.deployments(REPO) == [] and fake.violations == []


async def test_auto_inactive_marks_previous_deployments(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    gh = await installation_gh(fake, session)
    ids = []
    for _ in range(2):
        deployment = await gh.post(
            f"/repos/{REPO}/deployments", data={"ref": fake_sha(7), "environment": "pr-7", "required_contexts": []}
        )
        await gh.post(f"/repos/{REPO}/deployments/{deployment['id']}/statuses", data={"state": "success"})
        ids.append(deployment["id"])
    assert [s["state"] for s in fake.deployment_statuses(REPO, ids[0])] == ["success", "inactive"]
    listed = [d["id"] async for d in gh.getiter(f"/repos/{REPO}/deployments?environment=pr-7&per_page=1")]
    assert listed == ids[::-1]


async def test_manifest_conversion_returns_usable_credentials(fake_github, session):
    fake = fake_github
    fake.add_manifest_code("abc123")
    anonymous = app_gh(fake, session)
    converted = await anonymous.post("/app-manifests/abc123/conversions", data=b"")
    key = serialization.load_pem_private_key(converted["pem"].encode(), password=None)
    assert key.key_size == 2048
    assert converted["webhook_secret"] and converted["client_secret"] and converted["client_id"]
    token = apps.get_jwt(app_id=str(converted["id"]), private_key=converted["pem"])
    assert (await anonymous.getitem("/app", jwt=token))["slug"] == converted["slug"]
    with pytest.raises(gidgethub.BadRequest) as reused:
        await anonymous.post("/app-manifests/abc123/conversions", data=b"")
    assert reused.value.status_code == 404


async def test_suspended_installation(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    gh = await installation_gh(fake, session)
    fake.installations[INSTALLATION].suspended = True
    with pytest.raises(gidgethub.BadRequest) as suspended:
        await gh.getitem(f"/repos/{REPO}/pulls/7")
    assert suspended.value.status_code == 403
    with pytest.raises(gidgethub.BadRequest):
        await installation_gh(fake, session)


async def test_forks_permissions_and_reactions(fake_github, session):
    fake = fake_github
    setup_repo(fake)
    fake.add_pull(REPO, 8, user="contributor", fork=True, head_ref="main")
    fake.set_permission(REPO, "bob", "none")
    fake.set_permission(REPO, "carol", "maintain")
    gh = await installation_gh(fake, session)

    fork = await gh.getitem(f"/repos/{REPO}/pulls/8")
    assert fork["head"]["repo"]["fork"] and fork["head"]["repo"]["full_name"] == "contributor/hello"
    by_head = await gh.getitem(f"/repos/{REPO}/pulls?head=contributor:main")
    assert [p["number"] for p in by_head] == [8]
    run = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "preview", "head_sha": fork["head"]["sha"]})
    assert run["pull_requests"] == []  # GitHub leaves fork pull requests out

    levels = {}
    for user in ("bob", "carol", "alice", "stranger"):
        answer = await gh.getitem(f"/repos/{REPO}/collaborators/{user}/permission")
        levels[user] = (answer["permission"], answer["role_name"], answer["user"]["permissions"]["push"])
    assert levels == {
        "bob": ("none", "none", False),
        "carol": ("write", "maintain", True),
        "alice": ("read", "read", False),
        "stranger": ("read", "read", False),
    }

    comment = fake.add_comment(REPO, 8, "/preview", user="contributor", author_association="CONTRIBUTOR")
    first = await gh.post(f"/repos/{REPO}/issues/comments/{comment['id']}/reactions", data={"content": "+1"})
    again = await gh.post(f"/repos/{REPO}/issues/comments/{comment['id']}/reactions", data={"content": "+1"})
    assert first["id"] == again["id"] and [c.status for c in fake.calls("reactions/create-for-issue-comment")] == [
        201,
        200,
    ]
    [listed] = await gh.getitem(f"/repos/{REPO}/issues/8/comments")
    assert listed["reactions"]["+1"] == 1 and listed["author_association"] == "CONTRIBUTOR"
