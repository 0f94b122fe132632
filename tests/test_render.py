"""Golden files for the text people read on the pull request: the sticky comment and the check run, in every
state. Regenerate after an intended change with `GHAPP_UPDATE_GOLDEN=1 pytest tests/test_render.py` and review
the diff."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest

from ghapp.core import render

pytestmark = pytest.mark.fast  # no PostgreSQL, Terraform or server: `pytest -m fast`

GOLDEN = Path(__file__).parent / "golden"
T0 = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
HEAD = "0123456789abcdef0123456789abcdef01234567"
OLD = "fedcba9876543210fedcba9876543210fedcba98"

BASE = render.Snapshot(
    repository="acme/shop",
    pr_number=42,
    status="pending",
    desired="present",
    head_sha=HEAD,
    desired_sha=HEAD,
    deployed_sha=None,
    preview_url=None,
    outputs={},
    progress=None,
    awaiting_approval=False,
    attempts=0,
    retrying_at=None,
    last_error=None,
    updated_at=T0,
    expires_at=T0 + dt.timedelta(hours=72),
    details_url="https://ghapp.example.com/environments/7",
)
FAILED_LOG = "\n".join(
    [f"terraform_data.step: line {i}" for i in range(100)]
    + ["Error: local-exec provisioner error", "exit status 3. Output: ```boom```"]
)

STATES = {
    "queued": BASE,
    "waiting-for-cap": dataclasses.replace(BASE, waiting=render.Waiting(live=3, cap=3, position=2)),
    "deploying": dataclasses.replace(
        BASE,
        status="creating",
        progress={"done": 1, "total": 3, "current": "kubernetes_deployment.app"},
        run_action="apply",
        run_started_at=T0,
    ),
    "active": dataclasses.replace(
        BASE,
        status="active",
        deployed_sha=HEAD,
        preview_url="https://pr-42-shop-7.preview.example.com/",
        outputs={"preview_url": "https://pr-42-shop-7.preview.example.com/", "namespace": "pr-42-shop-7"},
        run_action="apply",
        run_started_at=T0 - dt.timedelta(seconds=95),
        run_finished_at=T0,
    ),
    "going-to-sleep": dataclasses.replace(
        BASE,
        status="creating",
        deployed_sha=HEAD,
        preview_url="https://pr-42-shop-7.preview.example.com/",
        sleeping=True,
        progress={"done": 0, "total": 1, "current": "terraform_data.process[0]"},
        run_action="apply",
        run_started_at=T0,
    ),
    "sleeping": dataclasses.replace(
        BASE,
        status="sleeping",
        deployed_sha=HEAD,
        preview_url="https://pr-42-shop-7.preview.example.com/",
        sleeping=True,
        run_action="apply",
        run_started_at=T0 - dt.timedelta(seconds=3),
        run_finished_at=T0,
    ),
    "active-through-gateway": dataclasses.replace(
        BASE,
        status="active",
        deployed_sha=HEAD,
        preview_url="http://127.0.0.1:20007/",
        gateway_url="http://pr-42-shop-7.localhost:8081/",
        outputs={"preview_url": "http://127.0.0.1:20007/", "port": 20007},
        run_action="apply",
        run_started_at=T0 - dt.timedelta(seconds=3),
        run_finished_at=T0,
    ),
    "failed-retrying": dataclasses.replace(
        BASE,
        status="failed",
        attempts=2,
        last_error="local-exec provisioner error\nexit status 3",
        retrying_at=T0 + dt.timedelta(seconds=40),
        log_tail=FAILED_LOG,
        run_action="apply",
        run_started_at=T0 - dt.timedelta(seconds=20),
        run_finished_at=T0,
    ),
    "failed": dataclasses.replace(
        BASE,
        status="failed",
        attempts=6,
        last_error="local-exec provisioner error\nexit status 3",
        log_tail=FAILED_LOG,
        run_action="apply",
        run_started_at=T0 - dt.timedelta(seconds=20),
        run_finished_at=T0,
    ),
    "destroyed": dataclasses.replace(BASE, status="destroyed", desired="absent"),
    "expired": dataclasses.replace(BASE, status="destroyed", desired="absent", expired=True),
    "awaiting-approval": dataclasses.replace(
        BASE, status="pending", desired="absent", desired_sha=None, awaiting_approval=True
    ),
    "active-services": dataclasses.replace(
        BASE,
        status="active",
        deployed_sha=HEAD,
        preview_url="https://pr-42-shop-7.preview.example.com/",
        outputs={
            "preview_url": "https://pr-42-shop-7.preview.example.com/",
            "preview_urls": {
                "web": "https://pr-42-shop-7.preview.example.com/",
                "api": "https://api-pr-42-shop-7.preview.example.com/",
                "admin`](javascript:alert(1))": "javascript:alert(1)",
            },
        },
        run_action="apply",
        run_started_at=T0 - dt.timedelta(seconds=95),
        run_finished_at=T0,
        config_source=".github/preview.yml from the repository at 0123456789abcdef0123456789abcdef01234567 (blob 9f3c2a1)",
    ),
    "invalid-config": dataclasses.replace(
        BASE,
        status="failed",
        hold="invalid",
        hold_reason="line 3: unknown key 'deplyo' (did you mean 'deploy'?)",
        last_error="line 3: unknown key 'deplyo' (did you mean 'deploy'?)",
        config_source=".github/preview.yml from the repository at 0123456789abcdef0123456789abcdef01234567 (blob 9f3c2a1)",
    ),
    "invalid-config-on-active": dataclasses.replace(
        BASE,
        status="active",
        deployed_sha=OLD,
        preview_url="https://pr-42-shop-7.preview.example.com/",
        hold="invalid",
        hold_reason="line 1: ttl: '2 days' is not a duration (write e.g. 30m, 48h, 1h30m)",
    ),
    "skipped": dataclasses.replace(
        BASE,
        status="destroyed",
        hold="skipped",
        hold_reason="the label `no-preview` is set (labels.ignore)",
        config_source=".github/preview.yml from the repository at 0123456789abcdef0123456789abcdef01234567 (blob 9f3c2a1)",
    ),
    "waiting-for-checks": dataclasses.replace(
        BASE, hold="waiting", hold_reason="waiting for build-image to succeed on 0123456"
    ),
    "new-push-on-active": dataclasses.replace(
        BASE, status="pending", deployed_sha=OLD, preview_url="https://pr-42-shop-7.preview.example.com/"
    ),
    "held-manual": dataclasses.replace(
        BASE,
        hold="skipped",
        hold_reason="deploy: manual — comment /preview deploy or press Deploy",
        deploy_button=True,
    ),
    "held-skipped-destroyed": dataclasses.replace(
        BASE, status="destroyed", hold="skipped", hold_reason="labelled no-preview (labels.ignore)"
    ),
    "held-waiting": dataclasses.replace(BASE, hold="waiting", hold_reason="waiting for build-image"),
    "held-failed-check-on-active": dataclasses.replace(
        BASE,
        status="active",
        deployed_sha=OLD,
        preview_url="https://pr-42-shop-7.preview.example.com/",
        hold="waiting",
        hold_reason="build-image failed on 0123456; not deploying — a re-run that succeeds deploys it",
    ),
}
ACTIVE = STATES["active"]
STATES |= {
    "kept": dataclasses.replace(ACTIVE, kept=True, expires_at=None),
    "expiry-reminder": dataclasses.replace(ACTIVE, reminded_at=ACTIVE.expires_at - dt.timedelta(hours=2, seconds=-20)),
    "repository-ttl": dataclasses.replace(ACTIVE, ttl=48 * 3600.0, expires_at=T0 + dt.timedelta(hours=48)),
    "expired-repository-ttl": dataclasses.replace(STATES["expired"], ttl=1800.0),
}


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GHAPP_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}: run with GHAPP_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"{name} changed: run with GHAPP_UPDATE_GOLDEN=1 and review the diff"


@pytest.mark.parametrize("state", sorted(STATES))
def test_comment_golden(state):
    body = render.comment(STATES[state], ttl=72 * 3600)
    assert body.startswith("<!-- ghapp:preview -->\n")
    golden(f"comment-{state}.md", body)


@pytest.mark.parametrize("state", sorted(STATES))
def test_check_run_golden(state):
    view = render.check_run(STATES[state])
    body = view.body("https://ghapp.example.com/environments/7", "7") if view else None
    golden(f"check-run-{state}.json", json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    if body:
        assert body["name"] == "Preview environment"
        assert len(body["output"]["summary"]) <= render.MAX_TEXT
        assert len(body["actions"]) <= 3
        assert all(
            len(a["label"]) <= 20 and len(a["description"]) <= 40 and len(a["identifier"]) <= 20
            for a in body["actions"]
        )


def test_superseded_check_run():
    body = render.superseded(OLD, HEAD, T0).body()
    assert (body["status"], body["conclusion"]) == ("completed", "neutral")
    assert body["output"]["title"] == "Superseded by 0123456"


def test_long_logs_are_cut_from_the_front_and_keep_the_error():
    huge = "\n".join(f"noise {i} " + "x" * 2000 for i in range(200)) + "\nError: the real cause"
    snap = dataclasses.replace(STATES["failed"], log_tail=huge)
    text = render.check_run(snap).body()["output"]["text"]
    assert len(text) <= render.MAX_TEXT
    assert "Error: the real cause" in text and "earlier lines cut" in text
    comment = render.comment(snap, ttl=3600)
    assert len(comment) <= render.MAX_TEXT and "Error: the real cause" in comment


def test_deployment_views():
    assert render.deployment(STATES["queued"]) is None
    assert render.deployment(STATES["deploying"]) == render.DeploymentView(
        HEAD, "in_progress", None, "Deploying 0123456"
    )
    active = render.deployment(STATES["active"])
    assert (active.state, active.environment_url) == ("success", "https://pr-42-shop-7.preview.example.com/")
    assert render.deployment(STATES["failed"]).state == "failure"
    assert render.deployment(STATES["destroyed"]).state == "inactive"
    assert render.deployment(STATES["awaiting-approval"]) is None
    asleep = render.deployment(STATES["sleeping"])  # the way to a sleeping preview stays: a request wakes it
    assert asleep.state == "success" and asleep.environment_url == "https://pr-42-shop-7.preview.example.com/"
    assert all(len(render.deployment(s).description) <= 140 for s in STATES.values() if render.deployment(s))


def test_the_gateway_url_is_what_people_open():
    """The check run, the comment and the deployment's "View deployment" button all name the gateway's URL, never
    the module's loopback address behind it."""
    snap = STATES["active-through-gateway"]
    deployment = render.deployment(snap)
    assert deployment.environment_url == "http://pr-42-shop-7.localhost:8081/"
    assert render.check_run(snap).title == "Active: http://pr-42-shop-7.localhost:8081/"
    for text in (render.comment(snap, ttl=3600), render.check_run(snap).summary, deployment.description):
        assert "pr-42-shop-7.localhost:8081" in text and "127.0.0.1" not in text


def test_hostile_text_cannot_break_out_of_the_log_block():
    snap = dataclasses.replace(STATES["failed"], log_tail="```\n@everyone <script>alert(1)</script>\n```")
    comment = render.comment(snap, ttl=3600)
    assert comment.count("```") == 2, "a fence in the log must not close the code block"


HOSTILE_OUTPUT = (
    "@octocat ![x](https://evil.example/i.png)\n# Heading <img src=x> [link](https://evil.example) | x ```` y"
)


def _outside_code_spans(markdown: str) -> str:
    return re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)


def test_module_outputs_are_escaped_and_only_http_urls_reach_github():
    """Finding 9: `preview_url = "javascript:…"` became the deployment's environment_url, and output values went into
    the check run's Markdown as they were (mentions, images, headings)."""
    s = dataclasses.replace(
        STATES["active"],
        preview_url="javascript:alert(1)",
        outputs={"preview_url": "javascript:alert(1)", "note": HOSTILE_OUTPUT, "pipe|`name`": "v"},
    )
    view, deployment, comment = render.check_run(s), render.deployment(s), render.comment(s, ttl=3600)
    assert deployment.environment_url is None and "javascript" not in deployment.description
    assert "javascript" not in view.title
    for text in (view.summary, comment):
        outside = _outside_code_spans(text)
        for danger in ("javascript", "@octocat", "![", "<img", "[link]", "# Heading", "evil.example"):
            assert danger not in outside, (danger, text)
        table = [line for line in text.splitlines() if line.startswith("| ")]
        assert all(line.count("|") - line.count("\\|") == 3 for line in table), table
    assert "not an http(s) URL" in view.summary and "not an http(s) URL" in comment


def test_safe_url_takes_plain_http_urls_only():
    assert render.safe_url("https://pr-1.preview.example.com/a?b=1") == "https://pr-1.preview.example.com/a?b=1"
    assert render.safe_url("http://127.0.0.1:8081/") == "http://127.0.0.1:8081/"
    for url in ("javascript:alert(1)", " https://x", "https://x/<b>", "data:text/html,x", "https://", "ftp://x", None):
        assert render.safe_url(url) is None, url


@pytest.mark.parametrize("state", ["failed", "failed-retrying"])
def test_the_quoted_error_cannot_mention_link_or_show_images(state):
    """Terraform's error can quote a provisioner's output, which is the pull request's code: its first line is shown
    in the check run as a code span, not as Markdown."""
    s = dataclasses.replace(STATES[state], last_error=f"{HOSTILE_OUTPUT}\nexit status 1")
    view = render.check_run(s)
    outside = _outside_code_spans(view.summary)
    for danger in ("@octocat", "![", "<img", "[link]", "evil.example"):
        assert danger not in outside, (danger, view.summary)


def test_a_hold_is_a_neutral_check_run_with_its_reason():
    for name in ("held-manual", "held-skipped-destroyed", "held-waiting", "held-failed-check-on-active"):
        view = render.check_run(STATES[name])
        expected = ("completed", "neutral") if STATES[name].hold == "skipped" else ("queued", None)
        assert (view.status, view.conclusion) == expected, name
        assert STATES[name].hold_reason in view.summary
        assert STATES[name].hold_reason in render.comment(STATES[name], ttl=3600)
    assert [a[2] for a in render.check_run(STATES["held-manual"]).actions] == ["deploy"]
    assert [a[2] for a in render.check_run(STATES["held-skipped-destroyed"]).actions] == ["redeploy"]
    assert "The preview of `fedcba9` stays" in render.check_run(STATES["held-failed-check-on-active"]).summary


def test_a_hold_reason_is_quoted():
    """A branch, label or check name in a reason cannot become a link, a mention or an image."""
    reason = "branch x`[a](http://evil)@user matches branches.ignore **"
    snap = dataclasses.replace(STATES["held-skipped-destroyed"], hold_reason=reason)
    for text in (render.check_run(snap).summary, render.comment(snap, ttl=3600)):
        outside = _outside_code_spans(text)
        assert "evil" not in outside and "@user" not in outside, text
