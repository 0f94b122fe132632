"""What the dashboard shows, computed from plain values (pure): relative times, links, status presentation."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse

from ghapp.core.contract import RunState, Status

# Status → symbol; the CSS class is the status word. The word is always shown as well: colour is never the only
# signal.
STATUS_SYMBOL: dict[str, str] = {
    Status.PENDING: "◷",
    Status.CREATING: "▶",
    Status.ACTIVE: "●",
    Status.SLEEPING: "☾",
    Status.DESTROYING: "▼",
    Status.DESTROYED: "○",
    Status.FAILED: "✕",
}
# A run is drawn like the status it leads to.
RUN_LOOKS_LIKE: dict[str, Status] = {
    RunState.RUNNING: Status.CREATING,
    RunState.SUCCEEDED: Status.ACTIVE,
    RunState.FAILED: Status.FAILED,
    RunState.SUPERSEDED: Status.PENDING,
    RunState.INTERRUPTED: Status.PENDING,
    RunState.ABANDONED: Status.FAILED,
}

_PR_URL = re.compile(r"(https?://[^/\s]+/[^/\s]+/[^/\s]+)/pull/\d+/?")
_HEX = re.compile(r"[0-9a-fA-F]{4,64}")


def span(seconds: float) -> str:
    """`45s`, `12m`, `5h`, `3d`: one unit, rounded down."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age(then: dt.datetime | None, now: dt.datetime) -> str:
    return span((now - then).total_seconds()) if then else ""


def expiry(then: dt.datetime | None, now: dt.datetime) -> str:
    if then is None:
        return "never"
    left = (then - now).total_seconds()
    return f"in {span(left)}" if left > 0 else f"expired {span(-left)} ago"


def duration(started: dt.datetime | None, finished: dt.datetime | None, now: dt.datetime) -> str:
    if started is None:
        return ""
    return span(((finished or now) - started).total_seconds())


def iso(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def utc(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def safe_url(url: str | None) -> str | None:
    """`url` if it is an http(s) link, else None: user-controlled text never becomes a `javascript:` link."""
    url = (url or "").strip()
    return url if url[:8].lower().startswith(("http://", "https://")) else None


def commit_url(repository: str, pr_url: str | None, sha: str | None) -> str | None:
    """The commit's page on the GitHub that the PR lives on (github.com or an Enterprise Server)."""
    if not sha or not _HEX.fullmatch(sha):
        return None
    match = _PR_URL.fullmatch(pr_url or "")
    base = (
        match.group(1)
        if match and safe_url(pr_url)
        else "https://github.com/" + urllib.parse.quote(repository, safe="/")
    )
    return f"{base}/commit/{sha}"


def status_class(status: str) -> str:
    return str(status) if status in STATUS_SYMBOL else str(Status.PENDING)


def status_symbol(status: str) -> str:
    return STATUS_SYMBOL.get(status, "?")


def run_class(state: str) -> str:
    return str(RUN_LOOKS_LIKE.get(state, Status.PENDING))


def local_path(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site (no scheme, no host, no `//`), else `default`: redirects after a form
    never leave the dashboard."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urllib.parse.urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default
