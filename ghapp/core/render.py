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

from ghapp.core.contract import CHECK_RUN_NAME, COMMENT_MARKER, Desired, Hold, Status, short_sha
from ghapp.core.policy import preview_ttl

MAX_TEXT = 65_535  # GitHub's limit for check-run summary/text and comment bodies
LOG_LINES = 60

HELP = """\
| command | what it does |
|---|---|
| `/preview deploy [sha]` | deploy the head commit you see, or the one named (for a fork: approves that commit) |
| `/preview redeploy` | run Terraform again for the deployed commit |
| `/preview destroy` | destroy the environment (push or `/preview deploy` to bring it back) |
| `/preview sleep` | put the preview to sleep now: nothing runs, everything is kept |
| `/preview wake` | wake a sleeping preview (its first request wakes it too) |
| `/preview keep` | keep the environment: no expiry while the pull request is open |
| `/preview keep off` | let it expire again, its time counted from now |
| `/preview help` | show this help |"""

_STATUS_WORDS = {
    Status.PENDING: ("🟡", "pending"),
    Status.CREATING: ("🔵", "deploying"),
    Status.ACTIVE: ("🟢", "active"),
    Status.SLEEPING: ("💤", "sleeping"),
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
    ttl: float | None = None  # the repository's `ttl`; None: the operator's
    kept: bool = False  # `/preview keep`
    reminded_at: dt.datetime | None = None  # when the expiry reminder became due (for the current expires_at)
    sleeping: bool = False  # the desired sleep: asleep, or going to sleep
    hold: str | None = None  # why a wanted preview is held back (ghapp.core.contract.Hold), and in words
    hold_reason: str | None = None
    config_source: str | None = None  # the configuration the preview was resolved with, in words
    gateway_url: str | None = None  # the preview through ghapp's gateway (core/gateway.served_url)

    @property
    def held(self) -> Hold | None:
        """The hold that matters now: only while the preview is wanted."""
        return Hold(self.hold) if self.hold and self.desired == Desired.PRESENT else None

    deploy_button: bool = False  # held by `deploy: manual` until someone asks: offer the Deploy button

    @property
    def url(self) -> str | None:
        """What people open: the gateway's URL when the gateway serves the preview, else the module's own."""
        return self.gateway_url or self.preview_url


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


def span(seconds: float) -> str:
    """A length of time for people: `40 s`, `45 min`, `2 h`, `1.5 h`."""
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600, 1):g} h"


KEPT_MEANS = "no expiry while the PR is open"
KEPT = f"kept: {KEPT_MEANS}"


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
    rows = [
        f"| {md_code(k, 100)} | {md_code(v)} |"
        for k, v in sorted(outputs.items())
        if k not in ("preview_url", "preview_urls")
    ]
    return "| output | value |\n|---|---|\n" + "\n".join(rows) if rows else ""


_ASLEEP = "is asleep: nothing runs, everything is kept. Its first request wakes it, or comment `/preview wake`."


def preview_urls(outputs: dict[str, Any]) -> dict[str, str]:
    """The module's optional `preview_urls` output (service name → URL), as given: names and URLs are the module's
    text; callers link only what `safe_url` allows."""
    urls = outputs.get("preview_urls")
    if not isinstance(urls, dict):
        return {}
    return {str(k): str(v) for k, v in sorted(urls.items()) if isinstance(v, str | int | float)}


def _services_table(outputs: dict[str, Any]) -> str:
    rows = [f"| {md_code(name, 100)} | {_preview_md(url)} |" for name, url in preview_urls(outputs).items()]
    return "| service | URL |\n|---|---|\n" + "\n".join(rows) if rows else ""


def _plain(text: str, limit: int = 100) -> str:
    """User text for a check run's title (plain text on GitHub): one line, bounded."""
    line = _CONTROL.sub(" ", text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _waiting_title(reason: str) -> str:
    return reason[:1].upper() + reason[1:] if reason.lower().startswith("waiting") else f"Waiting: {reason}"


def _config_line(s: Snapshot) -> str:
    return f"Configuration: {md_code(s.config_source, 300)}." if s.config_source else ""


def _held_check_run(s: Snapshot, hold: Hold) -> CheckRunView:
    sha, reason = s.head_sha, md_code(s.hold_reason or str(hold), 1000)
    kept = (
        f" The preview of `{short_sha(s.deployed_sha)}` stays as it is."
        if s.deployed_sha and s.status == Status.ACTIVE
        else ""
    )
    config = _config_line(s)
    if hold is Hold.INVALID:
        return CheckRunView(
            sha,
            "completed",
            "failure",
            f"Invalid {CONFIG_FILE}",
            f"`{CONFIG_FILE}` cannot be used, so nothing was applied for `{short_sha(sha)}`:\n\n> {reason}\n\n"
            f"Push a fix to deploy.{kept}\n\n{config}".strip(),
            completed_at=s.updated_at,
        )
    if hold is Hold.SKIPPED:
        return CheckRunView(
            sha,
            "completed",
            "neutral",
            "Preview skipped",
            f"No preview for `{short_sha(sha)}`:\n\n> {reason}\n\n{config}".strip(),
            actions=ACTIONS_MANUAL if s.deploy_button else ACTIONS_DESTROYED,
            completed_at=s.updated_at,
        )
    if hold is Hold.WAITING:
        return CheckRunView(
            sha,
            "queued",
            None,
            _waiting_title(_plain(s.hold_reason or "other checks")),
            f"`{short_sha(sha)}` is not deployed yet:\n\n> {reason}\n\nIt deploys by itself when that changes.{kept}",
        )
    return CheckRunView(sha, "queued", None, f"Queued {short_sha(sha)}", f"> {reason}{kept}")


ACTIONS_ACTIVE = (("Redeploy", "Run Terraform again", "redeploy"), ("Destroy", "Destroy this preview", "destroy"))
ACTIONS_DESTROYED = (("Redeploy", "Deploy this commit again", "redeploy"),)
CONFIG_FILE = ".github/preview.yml"
ACTIONS_MANUAL = (("Deploy", "Deploy a preview of this pull request", "deploy"),)


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
    if (hold := s.held) is not None and not (hold is Hold.QUEUED and s.waiting is not None):
        return _held_check_run(s, hold)
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
        summary = "\n\n".join(
            part
            for part in (
                f"**{_preview_md(s.url)}**",
                f"Deployed `{short_sha(sha)}` in {_duration(s)}.",
                f"Kept: {KEPT_MEANS}." if s.kept else "",
                _services_table(s.outputs),
                _outputs_table(s.outputs),
                _config_line(s),
            )
            if part
        )
        url = safe_url(s.url)
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
    if s.status == Status.SLEEPING and s.deployed_sha == sha:
        link = f"**{_preview_md(s.preview_url)}**\n\n" if s.preview_url else ""
        return CheckRunView(
            sha,
            "completed",
            "success",
            "Asleep",
            f"{link}`{short_sha(sha)}` {_ASLEEP}",
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
    if s.status == Status.CREATING and s.sleeping:
        return CheckRunView(
            sha,
            "in_progress",
            None,
            f"Going to sleep: {_progress(s, code=False)}",
            f"Terraform is putting the preview of `{short_sha(sha)}` to sleep: {_progress(s)}.",
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
    serving = s.status in (Status.ACTIVE, Status.SLEEPING)
    sha = s.deployed_sha if serving else (s.desired_sha if s.desired == Desired.PRESENT else None)
    if not sha or (s.awaiting_approval and not serving):
        return None
    if s.status == Status.ACTIVE:
        url = safe_url(s.url)
        return DeploymentView(sha, "success", url, f"Active at {url}"[:140] if url else "Active")
    if s.status == Status.SLEEPING:  # still the way to it: its first request wakes it
        return DeploymentView(sha, "success", safe_url(s.preview_url), "Asleep: the first request wakes it")
    if s.status == Status.FAILED:
        return DeploymentView(sha, "failure", None, ((s.last_error or "failed").splitlines() or ["failed"])[0][:140])
    if s.status == Status.CREATING:
        return DeploymentView(sha, "in_progress", None, f"Deploying {short_sha(sha)}")
    return None


def _reminder(s: Snapshot) -> str | None:
    """The expiry reminder, once it is due for the current expiry: how long was left when it became due."""
    if s.desired != Desired.PRESENT or s.kept or s.expires_at is None or s.reminded_at is None:
        return None
    if s.reminded_at >= s.expires_at:
        return None
    left = span((s.expires_at - s.reminded_at).total_seconds())
    return f"⏰ This preview expires in {left} ({when(s.expires_at)}); `/preview keep` to keep it."


def comment(s: Snapshot, ttl: float) -> str:
    """The sticky comment; `ttl`: the operator's GHAPP_ENV_TTL (the repository's own `ttl` wins)."""
    ttl = preview_ttl(ttl, s.ttl)
    icon, word = _STATUS_WORDS.get(Status(s.status), ("", s.status))
    rows = []
    waiting = s.waiting if s.status == Status.PENDING and not s.awaiting_approval else None
    if s.awaiting_approval:
        icon, word = "✋", "waiting for approval"
    elif s.held and s.status != Status.ACTIVE:
        icon, word = "⏸️", "not deployed"
    elif waiting is not None:
        icon, word = "⏳", f"waiting (position {waiting.position})"
    hold = s.held
    if hold is Hold.INVALID:
        icon, word = ("🔴", "invalid configuration") if s.status != Status.ACTIVE else (icon, word)
    elif hold is Hold.SKIPPED and s.status != Status.ACTIVE:
        icon, word = "⚪", "skipped"
    elif hold is Hold.WAITING and s.status != Status.ACTIVE:
        icon, word = "⏳", "waiting"
    if s.url and s.status in (Status.ACTIVE, Status.SLEEPING):
        asleep = " (asleep: the first request wakes it)" if s.status == Status.SLEEPING else ""
        rows.append(("Preview", _preview_md(s.url) + asleep))
        rows += [(md_code(name, 100), _preview_md(url)) for name, url in preview_urls(s.outputs).items()]
    if s.status == Status.CREATING:
        rows.append(("Progress", ("going to sleep: " if s.sleeping else "") + _progress(s)))
    rows.append(("Commit", f"`{short_sha(s.deployed_sha)}`" if s.deployed_sha else "-"))
    if s.head_sha != s.deployed_sha:
        rows.append(("Head", f"`{short_sha(s.head_sha)}`"))
    rows.append(("Updated", when(s.updated_at)))
    if s.desired == Desired.PRESENT and s.kept:
        rows.append(("Expires", f"{KEPT} (`/preview keep off` to undo)"))
    elif s.desired == Desired.PRESENT and s.expires_at:
        rows.append(("Expires", f"{when(s.expires_at)} ({span(ttl)} after the last push)"))
    if s.config_source:
        rows.append(("Configuration", md_code(s.config_source, 300)))
    if s.details_url:
        rows.append(("Details", s.details_url))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    parts = [COMMENT_MARKER, f"### Preview environment {icon} {word}", "", "| | |\n|---|---|\n" + table]
    if reminder := _reminder(s):
        parts += ["", reminder]
    if s.awaiting_approval:
        parts += [
            "",
            f"This pull request comes from a fork: a maintainer's `/preview deploy` approves "
            f"`{short_sha(s.head_sha)}` for deployment. Each later push needs approval again.",
        ]
    if waiting is not None:
        parts += ["", f"{waiting.text.capitalize()}. It deploys by itself when one of them is destroyed."]
    kept = f" The preview of `{short_sha(s.deployed_sha)}` stays as it is." if s.status == Status.ACTIVE else ""
    reason = md_code(s.hold_reason or str(hold), 1000)
    if hold is Hold.INVALID:
        parts += ["", f"**Invalid `{CONFIG_FILE}`**: {reason}", "", f"Nothing was applied. Push a fix to deploy.{kept}"]
    elif hold is Hold.SKIPPED:
        parts += ["", f"**No preview**: {reason}"]
    elif hold is Hold.WAITING:
        parts += ["", f"**Waiting**: {reason}. It deploys by itself when that changes.{kept}"]
    elif hold is Hold.QUEUED and waiting is None:
        parts += ["", f"**Queued**: {reason}{kept}"]
    if s.status == Status.FAILED and s.last_error and hold is not Hold.INVALID:
        retry = f" Retrying at {when(s.retrying_at)}." if s.retrying_at else " Push or `/preview redeploy` to retry."
        parts += ["", f"**Terraform failed** (attempt {s.attempts}).{retry}", "", _log_block(s, 20_000)]
    if s.desired == Desired.ABSENT and s.expired:
        parts += [
            "",
            f"The environment expired after {span(ttl)} without a push and was destroyed. "
            "Push, or comment `/preview deploy`, to bring it back.",
        ]
    elif s.desired == Desired.ABSENT and s.status == Status.DESTROYED:
        parts += ["", "The environment is destroyed. Comment `/preview deploy` to bring it back."]
    parts += ["", "<details><summary>Commands</summary>", "", HELP, "", "</details>"]
    return "\n".join(parts)  # bounded: the log block is at most 20,000 characters
