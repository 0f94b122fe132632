"""What people see on the pull request, rendered from an environment's state (pure): the check run, the sticky
comment and the deployment status. The GitHub publisher and the offline log show exactly this."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import urllib.parse
from typing import Any

from ghapp.core.contract import CHECK_RUN_NAME, COMMENT_MARKER, Desired, Status, short_sha

MAX_TEXT = 65_535  # GitHub's limit for check-run summary/text and comment bodies
LOG_LINES = 60

HELP = """\
| command | what it does |
|---|---|
| `/preview deploy [sha]` | deploy the head commit you see, or the one named (for a fork: approves that commit) |
| `/preview redeploy` | run Terraform again for the deployed commit |
| `/preview destroy` | destroy the environment (push or `/preview deploy` to bring it back) |
| `/preview help` | show this help |"""

_STATUS_WORDS = {
    Status.PENDING: ("🟡", "pending"),
    Status.CREATING: ("🔵", "deploying"),
    Status.ACTIVE: ("🟢", "active"),
    Status.DESTROYING: ("🟠", "destroying"),
    Status.DESTROYED: ("⚪", "destroyed"),
    Status.FAILED: ("🔴", "failed"),
}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything the rendering needs, as plain data."""

    repository: str
    pr_number: int
    status: str
    desired: str
    head_sha: str
    desired_sha: str | None
    deployed_sha: str | None
    preview_url: str | None
    outputs: dict[str, Any]
    progress: dict[str, Any] | None
    awaiting_approval: bool
    attempts: int
    retrying_at: dt.datetime | None
    last_error: str | None
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    run_action: str | None = None
    run_started_at: dt.datetime | None = None
    run_finished_at: dt.datetime | None = None
    log_tail: str = ""
    details_url: str | None = None
    expired: bool = False
    waiting: Waiting | None = None
    hold: str | None = None  # `Hold`: why the head commit is held back, when it is
    hold_reason: str | None = None  # plain text for people (quoted as code when shown)
    deploy_button: bool = False  # held by `deploy: manual` until someone asks: offer the Deploy button

    @property
    def held(self) -> bool:
        """Held back by a rule of `.github/preview.yml` (skipped, or waiting for checks), as shown on GitHub."""
        return (
            self.hold in ("skipped", "waiting")
            and self.desired == Desired.PRESENT
            and self.status in (Status.PENDING, Status.ACTIVE, Status.DESTROYED)
        )


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A new preview held back by its repository's cap on live previews."""

    live: int
    cap: int
    position: int  # 1: the next to deploy

    @property
    def text(self) -> str:
        return (
            f"waiting: {self.live} previews of this repository are live (max_previews = {self.cap}); "
            f"position {self.position}"
        )


@dataclasses.dataclass(frozen=True)
class CheckRunView:
    sha: str
    status: str
    conclusion: str | None
    title: str
    summary: str
    text: str | None = None
    actions: tuple[tuple[str, str, str], ...] = ()  # (label, description, identifier)
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None

    def body(self, details_url: str | None = None, external_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": CHECK_RUN_NAME,
            "status": self.status,
            "output": {"title": self.title, "summary": self.summary},
        }
        if self.text:
            body["output"]["text"] = self.text
        if self.conclusion:
            body["conclusion"] = self.conclusion
        if self.started_at:
            body["started_at"] = iso(self.started_at)
        if self.completed_at:
            body["completed_at"] = iso(self.completed_at)
        body["actions"] = [{"label": label, "description": d, "identifier": i} for label, d, i in self.actions]
        if details_url:
            body["details_url"] = details_url
        if external_id:
            body["external_id"] = external_id
        return body


@dataclasses.dataclass(frozen=True)
class DeploymentView:
    sha: str
    state: str  # in_progress, success, failure, inactive
    environment_url: str | None
    description: str


@dataclasses.dataclass(frozen=True)
class Presentation:
    check_run: CheckRunView | None
    comment: str
    deployment: DeploymentView | None


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cut_front(text: str, limit: int) -> str:
    """Keep the end of a long log (errors are there), marking what was cut."""
    if len(text) <= limit:
        return text
    marker = "…(earlier lines cut)\n"
    return marker + text[-(limit - len(marker)) :]


def _duration(s: Snapshot) -> str:
    if s.run_started_at and s.run_finished_at:
        return f"{(s.run_finished_at - s.run_started_at).total_seconds():.0f} s"
    return "-"


def _progress(s: Snapshot, code: bool = True) -> str:
    p = s.progress or {}
    total = p.get("total")
    done = p.get("done", 0)
    text = f"{done}/{total} resources" if total is not None else "planning"
    tick = "`" if code else ""
    return text + (f", now {tick}{p['current']}{tick}" if p.get("current") else "")


def _log_block(s: Snapshot, limit: int) -> str:
    lines = "\n".join(s.log_tail.splitlines()[-LOG_LINES:]).replace("```", "ʼʼʼ")
    return f"```\n{cut_front(lines, limit - 10)}\n```" if lines else ""


# What a link placed on GitHub may hold: http(s), a host, and URL characters that Markdown gives no meaning to.
_URL_TEXT = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def safe_url(url: str | None) -> str | None:
    """`url` if it is a plain http(s) URL, else None: a module output `javascript:…` never becomes a link (pure)."""
    if not url or len(url) > 2000 or not _URL_TEXT.fullmatch(url):
        return None
    parts = urllib.parse.urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def md_code(value: object, limit: int = 200) -> str:
    """`value` as an inline code span for a Markdown table cell (pure): no mention, link, image, heading, HTML or
    emphasis can come out of it, a backtick run cannot close it early and a `|` cannot end the cell."""
    text = _CONTROL.sub(" ", str(value))[:limit].replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] == "`" or text[-1:] == "`" else ""  # CommonMark strips one space each side
    return f"{fence}{pad}{text}{pad}{fence}" if text.strip() else "` `"


def _first_line(s: Snapshot) -> str:
    """The error's first line as a code span: Terraform's errors can quote a provisioner's output (the pull
    request's code), which must not become a mention, a link or an image on GitHub."""
    return md_code((s.last_error or "failed").strip().splitlines()[0], 200)


def _preview_md(url: str | None) -> str:
    """The preview URL for Markdown: a bare link if it is safe, else shown as code and not linked."""
    if safe_url(url):
        return str(url)
    return f"{md_code(url)} (not an http(s) URL, so not linked)"


def _outputs_table(outputs: dict[str, Any]) -> str:
    rows = [f"| {md_code(k, 100)} | {md_code(v)} |" for k, v in sorted(outputs.items()) if k != "preview_url"]
    return "| output | value |\n|---|---|\n" + "\n".join(rows) if rows else ""


ACTIONS_ACTIVE = (("Redeploy", "Run Terraform again", "redeploy"), ("Destroy", "Destroy this preview", "destroy"))
ACTIONS_DESTROYED = (("Redeploy", "Deploy this commit again", "redeploy"),)
ACTIONS_MANUAL = (("Deploy", "Deploy a preview of this pull request", "deploy"),)


def _held_check_run(s: Snapshot) -> CheckRunView:
    """Neutral, with the rule's reason: a hold is never silent. What is live stays live while it is waiting."""
    kept = (
        f"\n\nThe preview of `{short_sha(s.deployed_sha)}` stays: {_preview_md(s.preview_url)}"
        if s.status == Status.ACTIVE and s.deployed_sha
        else ""
    )
    return CheckRunView(
        s.head_sha,
        "completed",
        "neutral",
        "Waiting for checks" if s.hold == "waiting" else "Not deployed",
        f"Not deployed: {md_code(s.hold_reason or s.hold, 1000)}{kept}",
        actions=ACTIONS_MANUAL if s.deploy_button else (),
        completed_at=s.updated_at,
    )


def check_run(s: Snapshot) -> CheckRunView | None:
    sha = s.head_sha
    if s.awaiting_approval:
        return CheckRunView(
            sha,
            "completed",
            "action_required",
            "Approval needed",
            "This pull request comes from a fork, so its commits are not deployed automatically. "
            f"A maintainer's `/preview deploy` comment approves `{short_sha(sha)}`; each later push "
            "needs approval again.",
            completed_at=s.updated_at,
        )
    if s.desired_sha and s.desired_sha != sha:
        return None  # the head is not what is deployed here (a fork's unapproved push): nothing to say on it
    if s.held:
        return _held_check_run(s)
    if s.desired == Desired.ABSENT or s.status in (Status.DESTROYING, Status.DESTROYED):
        return CheckRunView(
            sha,
            "completed",
            "neutral",
            "Preview destroyed",
            "The preview environment was destroyed. Comment `/preview deploy` or push to bring it back.",
            actions=ACTIONS_DESTROYED,
            completed_at=s.updated_at,
        )
    if s.status == Status.ACTIVE and s.deployed_sha == sha:
        summary = (
            f"**{_preview_md(s.preview_url)}**\n\nDeployed `{short_sha(sha)}` in {_duration(s)}.\n\n"
            f"{_outputs_table(s.outputs)}"
        ).strip()
        url = safe_url(s.preview_url)
        return CheckRunView(
            sha,
            "completed",
            "success",
            f"Active: {url}" if url else "Active",
            summary,
            actions=ACTIONS_ACTIVE,
            started_at=s.run_started_at,
            completed_at=s.run_finished_at,
        )
    if s.status == Status.FAILED and s.retrying_at is None:
        summary = f"Terraform failed for `{short_sha(sha)}` after {s.attempts} attempt(s):\n\n> {_first_line(s)}"
        return CheckRunView(
            sha,
            "completed",
            "failure",
            "Deployment failed",
            summary,
            text=_log_block(s, MAX_TEXT) or None,
            actions=ACTIONS_ACTIVE,
            started_at=s.run_started_at,
            completed_at=s.run_finished_at,
        )
    if s.status == Status.FAILED:
        return CheckRunView(
            sha,
            "in_progress",
            None,
            f"Attempt {s.attempts} failed, retrying",
            f"Terraform failed for `{short_sha(sha)}`:\n\n> {_first_line(s)}\n\nRetrying at {when(s.retrying_at)}.",
            text=_log_block(s, MAX_TEXT) or None,
            started_at=s.run_started_at,
        )
    if s.status == Status.CREATING:
        return CheckRunView(
            sha,
            "in_progress",
            None,
            f"Deploying {short_sha(sha)}: {_progress(s, code=False)}",
            f"Terraform is applying `{short_sha(sha)}`: {_progress(s)}.",
            started_at=s.run_started_at,
        )
    if s.waiting is not None and s.status == Status.PENDING:
        return CheckRunView(
            sha,
            "queued",
            None,
            f"Waiting: {s.waiting.live} previews live, position {s.waiting.position}",
            f"{s.waiting.text}. `{short_sha(sha)}` deploys by itself when one of them is destroyed.",
        )
    return CheckRunView(
        sha, "queued", None, f"Queued {short_sha(sha)}", f"Waiting for a worker to deploy `{short_sha(sha)}`."
    )


def superseded(sha: str, by: str, at: dt.datetime) -> CheckRunView:
    return CheckRunView(
        sha,
        "completed",
        "neutral",
        f"Superseded by {short_sha(by)}",
        f"A newer commit, `{short_sha(by)}`, is deployed instead.",
        completed_at=at,
    )


def deployment(s: Snapshot) -> DeploymentView | None:
    if s.status in (Status.DESTROYING, Status.DESTROYED) and s.deployed_sha is None:
        return DeploymentView("", "inactive", None, "Preview destroyed")
    sha = s.deployed_sha if s.status == Status.ACTIVE else (s.desired_sha if s.desired == Desired.PRESENT else None)
    if not sha or (s.awaiting_approval and s.status != Status.ACTIVE):
        return None
    if s.status == Status.ACTIVE:
        url = safe_url(s.preview_url)
        return DeploymentView(sha, "success", url, f"Active at {url}"[:140] if url else "Active")
    if s.status == Status.FAILED:
        return DeploymentView(sha, "failure", None, ((s.last_error or "failed").splitlines() or ["failed"])[0][:140])
    if s.status == Status.CREATING:
        return DeploymentView(sha, "in_progress", None, f"Deploying {short_sha(sha)}")
    return None


def comment(s: Snapshot, ttl: float) -> str:
    icon, word = _STATUS_WORDS.get(Status(s.status), ("", s.status))
    rows = []
    waiting = s.waiting if s.status == Status.PENDING and not s.awaiting_approval else None
    if s.awaiting_approval:
        icon, word = "✋", "waiting for approval"
    elif s.held and s.status != Status.ACTIVE:
        icon, word = "⏸️", "not deployed"
    elif waiting is not None:
        icon, word = "⏳", f"waiting (position {waiting.position})"
    if s.preview_url and s.status == Status.ACTIVE:
        rows.append(("Preview", _preview_md(s.preview_url)))
    if s.status == Status.CREATING:
        rows.append(("Progress", _progress(s)))
    rows.append(("Commit", f"`{short_sha(s.deployed_sha)}`" if s.deployed_sha else "-"))
    if s.head_sha != s.deployed_sha:
        rows.append(("Head", f"`{short_sha(s.head_sha)}`"))
    rows.append(("Updated", when(s.updated_at)))
    if s.desired == Desired.PRESENT and s.expires_at:
        rows.append(("Expires", f"{when(s.expires_at)} ({ttl / 3600:g} h after the last push)"))
    if s.details_url:
        rows.append(("Details", s.details_url))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    parts = [COMMENT_MARKER, f"### Preview environment {icon} {word}", "", "| | |\n|---|---|\n" + table]
    if s.awaiting_approval:
        parts += [
            "",
            f"This pull request comes from a fork: a maintainer's `/preview deploy` approves "
            f"`{short_sha(s.head_sha)}` for deployment. Each later push needs approval again.",
        ]
    if waiting is not None:
        parts += ["", f"{waiting.text.capitalize()}. It deploys by itself when one of them is destroyed."]
    if s.held and not s.awaiting_approval:
        parts += ["", f"**`{short_sha(s.head_sha)}` is not deployed:** {md_code(s.hold_reason or s.hold, 1000)}"]
    if s.status == Status.FAILED and s.last_error:
        retry = f" Retrying at {when(s.retrying_at)}." if s.retrying_at else " Push or `/preview redeploy` to retry."
        parts += ["", f"**Terraform failed** (attempt {s.attempts}).{retry}", "", _log_block(s, 20_000)]
    if s.desired == Desired.ABSENT and s.expired:
        parts += [
            "",
            f"The environment expired after {ttl / 3600:g} h without a push and was destroyed. "
            "Push, or comment `/preview deploy`, to bring it back.",
        ]
    elif s.desired == Desired.ABSENT and s.status == Status.DESTROYED:
        parts += ["", "The environment is destroyed. Comment `/preview deploy` to bring it back."]
    parts += ["", "<details><summary>Commands</summary>", "", HELP, "", "</details>"]
    return "\n".join(parts)  # bounded: the log block is at most 20,000 characters
