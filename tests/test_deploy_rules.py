"""When a preview is deployed, end to end: the real server, PostgreSQL and Terraform (scripted module) with the
strict fake GitHub. Each rule holds a preview back (a neutral check run with the reason, the comment says it) and
releases it: drafts (ready_for_review), labels (unlabeled), paths (a push touching a path), wait_for (a check run
or commit status that succeeds), `deploy: manual` (the Deploy button).

The configuration is injected with a `ConfigurationReader` of this test (app key `CONFIGURATION`), until the
configuration helper's reader of `.github/preview.yml` lands."""

from __future__ import annotations

import copy
import logging

import pytest

from ghapp.core.repoconfig import ConfigOrigin, RepoConfig
from ghapp.web import keys
from ghapp.web.app import create_app
from ghapp.workers.resolve import ConfigurationReader
from tests.support import Deliveries, environment, fake_sha, runs, wait_for
from tests.test_github_app import (  # noqa: F401 - `github` is a fixture
    INSTALLATION,
    REPO,
    REPO_ID,
    SHA,
    check_run_event,
    comment_on_pr,
    github,
    post,
)


async def ready(app) -> bool:
    return app[keys.READY].is_set()


class Configured(ConfigurationReader):
    """The repository's configuration, as a test sets it."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config

    async def read(self, env):
        return self.config, ConfigOrigin("repository", "b" * 40, env.desired_sha)


@pytest.fixture
def start(settings, aiohttp_client, github):
    async def start(config: RepoConfig, **changes):
        app = create_app(
            settings.replace(
                app_id=str(github.app_id),
                private_key=github.private_key_pem,
                github_api_url=github.base_url,
                public_url="https://ghapp.example.com",
                **changes,
            )
        )
        app[keys.CONFIGURATION] = Configured(config)
        client = await aiohttp_client(app)
        await wait_for(lambda: ready(app), what="migrations")
        return client

    return start


def pull_request(deliveries: Deliveries, action: str, *, sha: str = SHA, draft=False, labels=("bug",)) -> dict:
    data = deliveries.pull_request(action, sha=sha)
    data["pull_request"]["draft"] = draft
    data["pull_request"]["labels"] = [{**data["pull_request"]["labels"][0], "name": name} for name in labels]
    return data


async def settled(db, env_id: int, status: str | None = None, hold: str | None = None):
    """The environment once converged and published, with that status and hold."""
    env = await environment(db, env_id)
    done = env and env["observed_generation"] == env["generation"] and env["published_version"] == env["version"]
    return env if done and (status is None or env["status"] == status) and env["hold"] == hold else None


def check_run_on(github, sha: str) -> dict:
    (run,) = [r for r in github.check_runs(REPO) if r["head_sha"] == sha and r["name"] == "Preview environment"]
    return run


def the_comment(github) -> str:
    """ghapp's sticky comment (people's comments and command replies aside)."""
    (body,) = [c["body"] for c in github.comments(REPO, 2) if c["body"].startswith("<!-- ghapp:preview -->")]
    return body


def assert_held(github, sha: str, words: str) -> None:
    """Shown on the pull request: a skip is a neutral check run, a wait a queued one; both with the reason."""
    run = check_run_on(github, sha)
    waiting = words.startswith("waiting for") or "not deploying" in words
    assert (run["status"], run["conclusion"]) == (("queued", None) if waiting else ("completed", "neutral")), run
    assert words in run["output"]["summary"], run["output"]
    assert words in the_comment(github)


async def test_a_draft_waits_until_it_is_ready_for_review(start, deliveries, db, github):
    github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="Codertocat", draft=True)
    client = await start(RepoConfig(drafts=False))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened", draft=True)))[
        "environment_id"
    ]
    env = await wait_for(lambda: settled(db, env_id, "pending", "skipped"), what="held: a draft")
    assert env["draft"] is True and await runs(db, env_id) == []
    assert_held(github, SHA, "draft pull request (drafts: false)")

    await post(client, deliveries, "pull_request", pull_request(deliveries, "ready_for_review"))
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed once ready")
    assert env["draft"] is False and check_run_on(github, SHA)["conclusion"] == "success"

    await post(client, deliveries, "pull_request", pull_request(deliveries, "converted_to_draft", draft=True))
    await wait_for(lambda: settled(db, env_id, "destroyed", "skipped"), what="destroyed: a draft again")
    assert_held(github, SHA, "draft pull request")


async def test_a_label_holds_a_preview_back_and_removing_it_releases_it(start, deliveries, db, github):
    client = await start(RepoConfig(labels_ignore=("no-preview",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "active"), what="active")
    assert env["labels"] == ["bug"]

    await post(client, deliveries, "pull_request", pull_request(deliveries, "labeled", labels=("bug", "no-preview")))
    await wait_for(lambda: settled(db, env_id, "destroyed", "skipped"), what="destroyed by the label")
    assert_held(github, SHA, "labelled no-preview (labels.ignore)")

    await post(client, deliveries, "pull_request", pull_request(deliveries, "unlabeled", labels=("bug",)))
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed again without the label")
    assert [r["action"] for r in await runs(db, env_id)] == ["apply", "destroy", "apply"]


async def test_labels_that_change_nothing_change_nothing(start, deliveries, db, github):
    """A label no rule looks at, or one that was there already: no new generation, no run, the expiry stays."""
    client = await start(RepoConfig(labels_ignore=("no-preview",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    before = await wait_for(lambda: settled(db, env_id, "active"), what="active")
    await post(client, deliveries, "pull_request", pull_request(deliveries, "labeled", labels=("bug",)))
    await post(client, deliveries, "pull_request", pull_request(deliveries, "labeled", labels=("bug", "docs")))
    after = await environment(db, env_id)
    assert after["labels"] == ["bug", "docs"]
    assert (after["generation"], after["expires_at"], after["desired_sha"]) == (
        before["generation"],
        before["expires_at"],
        before["desired_sha"],
    )


async def test_labels_do_not_bring_back_a_destroyed_preview(start, deliveries, db, github):
    github.set_permission(REPO, "Codertocat", "admin")
    client = await start(RepoConfig(labels_require=("preview",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "skipped"), what="held: no label")
    assert_held(github, SHA, "needs one of the labels preview (labels.require)")
    data = pull_request(deliveries, "closed")
    await post(client, deliveries, "pull_request", data)
    await wait_for(lambda: settled(db, env_id, "destroyed"), what="closed")
    labelled = pull_request(deliveries, "labeled", labels=("preview",))
    labelled["pull_request"]["state"] = "closed"
    assert "ignored" in await post(client, deliveries, "pull_request", labelled)
    assert (await environment(db, env_id))["desired"] == "absent"


async def test_paths_hold_until_a_push_touches_one(start, deliveries, db, github):
    github.set_pull_files(REPO, 2, ["README.md", {"filename": "docs/app.md", "status": "added"}])
    client = await start(RepoConfig(paths=("app/**", "infra/**")))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "skipped"), what="held: no path changed")
    assert_held(github, SHA, "changes no file under paths (app/**, infra/**)")

    new = fake_sha("touches app")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    github.set_pull_files(REPO, 2, ["README.md", {"filename": "app/main.py", "status": "added"}])
    await post(client, deliveries, "pull_request", pull_request(deliveries, "synchronize", sha=new))
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed: a path changed")
    assert env["deployed_sha"] == new


async def test_paths_see_every_page_of_changed_files(start, deliveries, db, github):
    github.set_pull_files(REPO, 2, [f"docs/page-{i}.md" for i in range(250)] + ["infra/main.tf"])
    client = await start(RepoConfig(paths=("infra/**",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "active"), what="deployed: the path is on the third page")


def check_run_completed(deliveries: Deliveries, name: str, sha: str = SHA) -> dict:
    """Another App's (CI's) check run on `sha` completed."""
    data = copy.deepcopy(deliveries.payload("check_run.completed"))
    data["check_run"]["name"] = name
    data["check_run"]["head_sha"] = sha
    data["repository"]["id"] = REPO_ID
    data["installation"] = {"id": INSTALLATION, "node_id": "x"}
    return data


async def test_wait_for_a_check_run_failure_says_so_and_a_rerun_deploys(start, deliveries, db, github):
    client = await start(RepoConfig(wait_for=("build-image",)))
    github.add_check_run(REPO, SHA, "build-image", status="in_progress", conclusion=None)
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "waiting"), what="waiting for build-image")
    assert_held(github, SHA, "waiting for build-image")

    github.add_check_run(REPO, SHA, "build-image", conclusion="failure")
    reply = await post(client, deliveries, "check_run", check_run_completed(deliveries, "build-image"))
    assert reply["environments"] == [env_id]
    await wait_for(lambda: _reason(db, env_id, "failed"), what="the failure recorded")
    await wait_for(lambda: settled(db, env_id, "pending", "waiting"), what="published")
    assert_held(github, SHA, f"build-image failed on {SHA[:7]}; not deploying")
    assert await runs(db, env_id) == []

    other = await post(client, deliveries, "check_run", check_run_completed(deliveries, "lint"))
    assert other["environments"] == [], "a check the configuration does not wait for resolves nothing"

    github.add_check_run(REPO, SHA, "build-image", conclusion="success")  # the re-run
    await post(client, deliveries, "check_run", check_run_completed(deliveries, "build-image"))
    await wait_for(lambda: settled(db, env_id, "active"), what="deployed after the re-run")
    assert check_run_on(github, SHA)["conclusion"] == "success"


async def _reason(db, env_id: int, word: str):
    env = await environment(db, env_id)
    return env if word in (env["hold_reason"] or "") else None


async def test_wait_for_a_commit_status(start, deliveries, db, github):
    client = await start(RepoConfig(wait_for=("ci/build",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "waiting"), what="waiting for ci/build")
    github.add_status(REPO, SHA, "ci/build", "success")
    status = {
        "id": 1,
        "sha": SHA,
        "name": REPO,
        "context": "ci/build",
        "state": "success",
        "repository": {**deliveries.payload("check_run.completed")["repository"], "id": REPO_ID},
        "installation": {"id": INSTALLATION, "node_id": "x"},
    }
    assert (await post(client, deliveries, "status", status))["environments"] == [env_id]
    await wait_for(lambda: settled(db, env_id, "active"), what="deployed once ci/build succeeded")


async def test_a_check_suite_completed_resolves_waiting_previews(start, deliveries, db, github):
    client = await start(RepoConfig(wait_for=("build-image",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "waiting"), what="waiting")
    github.add_check_run(REPO, SHA, "build-image", conclusion="neutral")  # neutral passes, as GitHub counts it
    suite = copy.deepcopy(deliveries.payload("check_suite.completed"))
    suite["check_suite"]["head_sha"] = SHA
    suite["repository"]["id"] = REPO_ID
    suite["installation"] = {"id": INSTALLATION, "node_id": "x"}
    assert (await post(client, deliveries, "check_suite", suite))["environments"] == [env_id]
    await wait_for(lambda: settled(db, env_id, "active"), what="deployed")


async def test_our_own_check_runs_are_not_waited_for(start, deliveries, db, github):
    client = await start(RepoConfig(wait_for=("build-image",)))
    data = check_run_completed(deliveries, "Preview environment")
    data["check_run"]["app"]["id"] = github.app_id
    assert "ignored" in await post(client, deliveries, "check_run", data)


async def test_manual_deploys_when_the_button_is_pressed(start, deliveries, db, github):
    sender = deliveries.payload("check_run.requested_action")["sender"]["login"]
    github.set_permission(REPO, sender, "write")
    client = await start(RepoConfig(deploy="manual"))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "skipped"), what="held: manual")
    assert_held(github, SHA, "deploy: manual — comment /preview deploy or press Deploy")
    assert [a["identifier"] for a in check_run_on(github, SHA)["actions"]] == ["deploy"]

    press = check_run_event(deliveries, github, env_id, "requested_action", "deploy")
    assert (await post(client, deliveries, "check_run", press))["command"] == "deploy"
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed by the button")
    assert env["deploy_requested"] is True

    new = fake_sha("manual push")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", pull_request(deliveries, "synchronize", sha=new))
    env = await wait_for(lambda: _deployed(db, env_id, new), what="a requested preview follows pushes")


async def _deployed(db, env_id, sha):
    env = await settled(db, env_id, "active")
    return env if env and env["deployed_sha"] == sha else None


async def test_offline_the_rules_that_need_github_are_skipped(settings, aiohttp_client, deliveries, db, caplog):
    app = create_app(settings)
    app[keys.CONFIGURATION] = Configured(RepoConfig(paths=("app/**",), wait_for=("build-image",)))
    client = await aiohttp_client(app)
    await wait_for(lambda: ready(app), what="migrations")
    with caplog.at_level(logging.INFO, logger="ghapp.workers.rules"):
        env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
        await wait_for(lambda: settled(db, env_id, "active"), what="deployed offline")
    assert "are not checked without the GitHub App" in caplog.text


async def test_manual_preview_deploy_comment_and_destroy_ends_the_request(start, deliveries, db, github):
    client = await start(RepoConfig(deploy="manual"))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "skipped"), what="held: manual")

    await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview deploy", github=github))
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed on request")
    assert env["deploy_requested"] is True

    await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview destroy", github=github))
    env = await wait_for(lambda: settled(db, env_id, "destroyed"), what="destroyed")
    assert env["deploy_requested"] is False

    new = fake_sha("after destroy")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", pull_request(deliveries, "synchronize", sha=new))
    await wait_for(lambda: settled(db, env_id, "pending", "skipped"), what="a push waits for a new request")
    assert_held(github, new, "deploy: manual")


def check_suite_completed(deliveries: Deliveries, sha: str = SHA) -> dict:
    suite = copy.deepcopy(deliveries.payload("check_suite.completed"))
    suite["check_suite"]["head_sha"] = sha
    suite["repository"]["id"] = REPO_ID
    suite["installation"] = {"id": INSTALLATION, "node_id": "x"}
    return suite


async def test_looking_again_costs_only_conditional_requests(start, deliveries, db, github):
    """Resolving a waiting preview again when nothing changed on GitHub is answered by 304s (no rate limit)."""
    client = await start(RepoConfig(wait_for=("build-image",)))
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "pending", "waiting"), what="waiting")
    counted = github.call_counts()
    assert (counted["checks/list-for-ref"], counted["repos/get-combined-status-for-ref"]) == (1, 1)

    assert (await post(client, deliveries, "check_suite", check_suite_completed(deliveries)))["environments"] == [
        env_id
    ]
    await wait_for(lambda: _not_modified(github, "repos/get-combined-status-for-ref"), what="looked again")
    await wait_for(lambda: settled(db, env_id, "pending", "waiting"), what="still waiting")
    assert github.not_modified_counts()["checks/list-for-ref"] == 1
    after = github.call_counts()
    assert (after["checks/list-for-ref"], after["repos/get-combined-status-for-ref"]) == (1, 1)


async def _not_modified(github, operation: str):
    return github.not_modified_counts().get(operation)


async def test_a_new_base_branch_resolves_the_preview_again(start, deliveries, db, github):
    client = await start(RepoConfig())
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    before = await wait_for(lambda: settled(db, env_id, "active"), what="active")
    edited = pull_request(deliveries, "opened")
    edited["action"] = "edited"
    edited["changes"] = {"base": {"ref": {"from": "master"}, "sha": {"from": SHA}}}
    edited["pull_request"]["base"]["ref"] = "next"
    await post(client, deliveries, "pull_request", edited)
    env = await environment(db, env_id)
    assert (env["base_ref"], env["generation"]) == ("next", before["generation"] + 1)
    assert env["expires_at"] == before["expires_at"], "not a push: the expiry stays"
    await wait_for(lambda: settled(db, env_id, "active"), what="resolved again")


async def test_an_installation_that_has_not_accepted_statuses_read_keeps_working(start, deliveries, db, github):
    """The App gained `statuses: read` for `wait_for`; an installation that has not accepted it yet still gets its
    previews (the token is asked for again without the permissions it was refused)."""
    granted = {"checks": "write", "deployments": "write", "issues": "write", "pull_requests": "read"}
    github.installations[INSTALLATION].permissions = {"metadata": "read", **granted}
    client = await start(RepoConfig())
    env_id = (await post(client, deliveries, "pull_request", pull_request(deliveries, "opened")))["environment_id"]
    await wait_for(lambda: settled(db, env_id, "active"), what="active and published")
    assert check_run_on(github, SHA)["conclusion"] == "success"
    assert "statuses" not in github.tokens[-1].permissions
