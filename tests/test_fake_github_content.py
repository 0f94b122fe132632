"""The fake GitHub's newer operations: contents, tarballs, changed files, compare, statuses and suites, users and
the OAuth web flow, ETags and rate limits. Every answer is validated against the description by the fixture."""

from __future__ import annotations

import base64
import io
import tarfile
from urllib.parse import parse_qs, urlsplit

import aiohttp
import gidgethub
import pytest
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI

from tests.support import fake_sha

REPO = "octo-org/hello"
INSTALLATION = 77


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def gh(fake_github, session):
    fake_github.add_installation(INSTALLATION, "octo-org", repos=[REPO])
    token = await apps.get_installation_access_token(
        GitHubAPI(session, "ghapp-tests", base_url=fake_github.base_url),
        installation_id=str(INSTALLATION),
        app_id=str(fake_github.app_id),
        private_key=fake_github.private_key_pem,
    )
    return GitHubAPI(session, "ghapp-tests", oauth_token=token["token"], base_url=fake_github.base_url)


async def test_contents_commits_compare_and_tarball(fake_github, gh, session):
    fake = fake_github
    base = fake.add_commit(REPO, {"README.md": "hello\n"}, branch="main")
    head = fake.add_commit(REPO, {"README.md": "hello\n", ".github/preview.yml": "version: 1\n"}, parents=[base])
    fake.add_pull(REPO, 7, head_sha=head, labels=["preview"])

    got = await gh.getitem(f"/repos/{REPO}/contents/.github/preview.yml?ref={head}")
    assert base64.b64decode(got["content"]) == b"version: 1\n" and got["encoding"] == "base64"
    assert got["sha"] == "cd1b55ea1ae21e0bf1b8ca61f6f6f1f67d6eea4b" or len(got["sha"]) == 40
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem(f"/repos/{REPO}/contents/.github/preview.yml")  # not on main
    listing = await gh.getitem(f"/repos/{REPO}/contents/.github?ref={head}")
    assert [e["name"] for e in listing] == ["preview.yml"]

    files = [f async for f in gh.getiter(f"/repos/{REPO}/pulls/7/files")]
    assert [(f["filename"], f["status"]) for f in files] == [(".github/preview.yml", "added")]
    assert [c["sha"] async for c in gh.getiter(f"/repos/{REPO}/pulls/7/commits")] == [head]
    assert [label["name"] async for label in gh.getiter(f"/repos/{REPO}/issues/7/labels")] == ["preview"]
    compare = await gh.getitem(f"/repos/{REPO}/compare/main...{head}")
    assert (compare["status"], compare["ahead_by"], len(compare["files"])) == ("ahead", 1, 1)
    commit = await gh.getitem(f"/repos/{REPO}/commits/{head}")
    assert commit["parents"][0]["sha"] == base

    fake.set_pull_files(REPO, 7, [f"src/{n}.py" for n in range(75)])
    assert len([f async for f in gh.getiter(f"/repos/{REPO}/pulls/7/files?per_page=30")]) == 75

    async with session.get(
        f"{fake.base_url}/repos/{REPO}/tarball/{head}",
        headers={"Authorization": f"token {gh.oauth_token}", "User-Agent": "t"},
        allow_redirects=False,
    ) as r:
        assert r.status == 302
        location = r.headers["Location"]
    async with session.get(location) as r:  # the archive host: no authentication
        archive = tarfile.open(fileobj=io.BytesIO(await r.read()))
    top = f"octo-org-hello-{head[:7]}"
    assert sorted(archive.getnames()) == [top, f"{top}/.github/preview.yml", f"{top}/README.md"]
    assert fake.archive_downloads == 1


async def test_statuses_suites_and_foreign_check_runs(fake_github, gh):
    fake, sha = fake_github, fake_sha(1)
    fake.add_status(REPO, sha, "build-image", "success")
    fake.add_check_run(REPO, sha, "tests", conclusion="failure", app="ci-app")
    combined = await gh.getitem(f"/repos/{REPO}/commits/{sha}/status")
    assert combined["state"] == "success" and combined["statuses"][0]["context"] == "build-image"
    runs = await gh.getitem(f"/repos/{REPO}/commits/{sha}/check-runs")
    assert [(r["name"], r["app"]["slug"]) for r in runs["check_runs"]] == [("tests", "ci-app")]
    suites = await gh.getitem(f"/repos/{REPO}/commits/{sha}/check-suites")
    assert [s["conclusion"] for s in suites["check_suites"]] == ["failure"]
    mine = await gh.getitem(f"/repos/{REPO}/commits/{sha}/check-runs?app_id={fake.app_id}")
    assert mine["total_count"] == 0


async def test_etags_and_rate_limits(fake_github, gh, session):
    fake = fake_github
    fake.add_pull(REPO, 7)
    url = f"{fake.base_url}/repos/{REPO}/pulls/7"
    headers = {"Authorization": f"token {gh.oauth_token}", "User-Agent": "t"}
    async with session.get(url, headers=headers) as r:
        etag, before = r.headers["ETag"], int(r.headers["x-ratelimit-remaining"])
    async with session.get(url, headers=headers | {"If-None-Match": etag}) as r:
        assert r.status == 304 and int(r.headers["x-ratelimit-remaining"]) == before
    assert fake.call_counts()["pulls/get"] == 1 and fake.not_modified_counts() == {"pulls/get": 1}

    fake.set_rate_limit(1, installation=INSTALLATION)
    rate = await gh.getitem("/rate_limit")
    assert rate["resources"]["core"]["remaining"] == 1
    await gh.getitem(f"/repos/{REPO}/pulls/7")
    with pytest.raises(gidgethub.RateLimitExceeded):
        await gh.getitem(f"/repos/{REPO}/pulls/7")
    assert fake.rate_limit_remaining(installation=INSTALLATION) == 0


async def test_sign_in_with_github(fake_github, session):
    fake = fake_github
    fake.add_installation(INSTALLATION, "octo-org", repos=[REPO, "octo-org/secret"])
    fake.repos["octo-org/secret"].private = True
    fake.sign_in_as("alice")
    query = {"client_id": fake.client_id, "state": "s1", "redirect_uri": "http://127.0.0.1:1/callback"}
    async with session.get(f"{fake.base_url}/login/oauth/authorize", params=query, allow_redirects=False) as r:
        assert r.status == 302
        back = parse_qs(urlsplit(r.headers["Location"]).query)
    assert back["state"] == ["s1"]
    form = {"client_id": fake.client_id, "client_secret": fake.client_secret, "code": back["code"][0]}
    async with session.post(
        f"{fake.base_url}/login/oauth/access_token", data=form, headers={"Accept": "application/json"}
    ) as r:
        token = (await r.json())["access_token"]
    assert token.startswith("ghu_")
    gh = GitHubAPI(session, "ghapp-tests", oauth_token=token, base_url=fake.base_url)
    assert (await gh.getitem("/user"))["login"] == "alice"
    assert (await gh.getitem(f"/repos/{REPO}"))["permissions"]["pull"] is True
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem("/repos/octo-org/secret")  # alice cannot read it: 404
    fake.set_permission("octo-org/secret", "alice", "read")
    assert (await gh.getitem("/repos/octo-org/secret"))["private"] is True
    installations = await gh.getitem("/user/installations")
    assert [i["id"] for i in installations["installations"]] == [INSTALLATION]
    repos = await gh.getitem(f"/user/installations/{INSTALLATION}/repositories")
    assert repos["total_count"] == 2
    assert [c.operation_id for c in fake.calls()][:2] == ["web/oauth-authorize", "web/oauth-access-token"]
