"""When a preview is deployed: the rules of `.github/preview.yml` (pure).

The rules are checked cheapest first: what the pull request's events told ghapp (`held_by_pull`: manual, drafts,
branches, labels), then its changed files (`held_by_paths`), then the checks of the commit (`held_by_checks`); the
caller looks the files and checks up on GitHub only when the configuration has `paths` or `wait_for`.

Reasons are plain text for people (the check run and the comment quote them as code, `render.md_code`, so a
branch, label or check name in them cannot become a link or a mention)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ghapp.core.contract import Hold, short_sha
from ghapp.core.model import Environment
from ghapp.core.repoconfig import Held, RepoConfig

MAX_PULL_FILES = 3000  # GitHub lists at most this many changed files of a pull request
MANUAL_REASON = "deploy: manual — comment /preview deploy or press Deploy"


@dataclasses.dataclass(frozen=True)
class PullFacts:
    """What the rules look at, as the pull request's events (or GitHub's answers about it) said."""

    head_ref: str = ""
    base_ref: str = ""
    draft: bool = False
    labels: tuple[str, ...] = ()
    deploy_requested: bool = False

    @classmethod
    def of(cls, env: Environment) -> PullFacts:
        return cls(env.head_ref, env.base_ref, env.draft, tuple(env.labels), env.deploy_requested)


def awaiting_request(env: Environment) -> bool:
    """Held by `deploy: manual` until someone asks (the check run offers a Deploy button)."""
    return env.hold == Hold.SKIPPED and not env.deploy_requested and (env.config or {}).get("deploy") == "manual"


def held_by_pull(config: RepoConfig, facts: PullFacts) -> Held | None:
    """`deploy: manual` without a request, a draft with `drafts: false`, `branches.ignore`, `labels.ignore` (any
    of them present) and `labels.require` (at least one of them present). Labels compare case-insensitively, as
    GitHub names them."""
    if config.deploy == "manual" and not facts.deploy_requested:
        return Held(Hold.SKIPPED, MANUAL_REASON)
    if facts.draft and not config.drafts:
        return Held(Hold.SKIPPED, "draft pull request (drafts: false) — deployed when it is ready for review")
    if ignored := next((p for p in config.branches_ignore if matches_branch(p, facts.head_ref)), None):
        return Held(Hold.SKIPPED, f"branch {facts.head_ref} matches branches.ignore {ignored}")
    labels = {label.casefold() for label in facts.labels}
    if ignored := next((label for label in config.labels_ignore if label.casefold() in labels), None):
        return Held(Hold.SKIPPED, f"labelled {ignored} (labels.ignore) — remove the label to deploy")
    if config.labels_require and not any(label.casefold() in labels for label in config.labels_require):
        return Held(Hold.SKIPPED, f"needs one of the labels {', '.join(config.labels_require)} (labels.require)")
    return None


def held_by_paths(config: RepoConfig, files: Sequence[str] | None) -> Held | None:
    """`paths`: deploy only when one of the changed files (new and previous names of renamed files) matches.
    `files` None: the pull request changes more files than GitHub lists (3,000), so it may touch them: deploy."""
    if not config.paths or files is None or any(path_selected(config.paths, f) for f in files):
        return None
    return Held(Hold.SKIPPED, f"changes no file under paths ({', '.join(config.paths)})")


class CheckState(enum.Enum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Check:
    """One `wait_for` name on the commit: a check run or a commit status. `outcome`: how it ended, for people."""

    state: CheckState
    outcome: str = ""


# Check-run conclusions that count as passing, as GitHub's required status checks count them.
PASSING_CONCLUSIONS = ("success", "neutral", "skipped")
_OUTCOMES = {
    "failure": "failed",
    "cancelled": "was cancelled",
    "timed_out": "timed out",
    "action_required": "needs an action",
    "startup_failure": "failed to start",
    "stale": "went stale",
    "error": "errored",
}


def check_of_run(run: Mapping[str, Any]) -> Check:
    """A check run (`GET /commits/{ref}/check-runs`) → its state."""
    if run.get("status") != "completed":
        return Check(CheckState.PENDING)
    conclusion = str(run.get("conclusion") or "")
    if conclusion in PASSING_CONCLUSIONS:
        return Check(CheckState.SUCCEEDED)
    return Check(CheckState.FAILED, _OUTCOMES.get(conclusion, "failed"))


def check_of_status(state: str) -> Check:
    """A commit status's state (`success`, `pending`, `failure`, `error`) → its state."""
    if state == "success":
        return Check(CheckState.SUCCEEDED)
    if state == "pending":
        return Check(CheckState.PENDING)
    return Check(CheckState.FAILED, _OUTCOMES.get(state, "failed"))


def checks_by_name(
    names: Iterable[str], check_runs: Iterable[Mapping[str, Any]], statuses: Iterable[Mapping[str, Any]]
) -> dict[str, Check]:
    """The state of each waited-for name on a commit: its newest check run of that name, else the commit status of
    that context (GitHub keeps the latest per context); a name neither has is not there yet (absent)."""
    wanted = set(names)
    newest: dict[str, Mapping[str, Any]] = {}
    for run in check_runs:
        name = run.get("name")
        if name in wanted and (name not in newest or int(run.get("id") or 0) > int(newest[name].get("id") or 0)):
            newest[name] = run
    found = {name: check_of_run(run) for name, run in newest.items()}
    for status in statuses:
        context = status.get("context")
        if context in wanted and context not in found:
            found[context] = check_of_status(str(status.get("state")))
    return found


def held_by_checks(wait_for: Sequence[str], sha: str, checks: Mapping[str, Check]) -> Held | None:
    """`wait_for`: each named check run or commit status must have succeeded on the commit. A failure holds the
    preview (WAITING: what exists stays, and a re-run that succeeds deploys) and says so; a check that has not
    finished, or not started, is waited for."""
    for name in wait_for:
        check = checks.get(name)
        if check is not None and check.state is CheckState.FAILED:
            reason = f"{name} {check.outcome} on {short_sha(sha)}; not deploying"
            return Held(Hold.WAITING, reason + " — a re-run that succeeds deploys it")
    pending = [name for name in wait_for if name not in checks or checks[name].state is CheckState.PENDING]
    if pending:
        return Held(Hold.WAITING, "waiting for " + ", ".join(pending))
    return None


def resolve_again(old: PullFacts, new: PullFacts, config: Mapping[str, Any] | None, held: bool) -> bool:
    """Whether a change of the pull request's facts (labels, draft, base branch) may change how its preview is
    resolved: yes if the preview is held back or was never resolved; else only if the configuration it was last
    resolved with has a rule on what changed: a label it names, the draft state under `drafts: false`, or the base
    branch (it changes the diff `paths` looks at, and where a fork's configuration is read)."""
    if old == new:
        return False
    if held or config is None or old.base_ref != new.base_ref:
        return True
    changed = {label.casefold() for label in old.labels} ^ {label.casefold() for label in new.labels}
    named = {str(label).casefold() for label in [*config.get("labels_require", []), *config.get("labels_ignore", [])]}
    return bool(changed & named) or (old.draft != new.draft and not config.get("drafts", True))


# --- globs ----------------------------------------------------------------------------------------------------------


def path_selected(patterns: Sequence[str], path: str) -> bool:
    """Whether `path` is selected by gitignore-like `patterns`, the last matching one winning: `*` and `?` within a
    name, `**` across directories, a pattern without `/` matches a name at any depth, a pattern matching a
    directory selects everything under it, `!pattern` takes back what an earlier pattern selected."""
    selected = False
    for pattern in patterns:
        if _path_regex(pattern.removeprefix("!")).fullmatch(path):
            selected = not pattern.startswith("!")
    return selected


def matches_branch(pattern: str, branch: str) -> bool:
    """Whether `branch` matches a `branches.ignore` glob: `*` within a path segment, `**` across (`dependabot/**`)."""
    return _glob_regex(pattern).fullmatch(branch) is not None


@functools.lru_cache(maxsize=512)
def _path_regex(pattern: str) -> re.Pattern[str]:
    """The path itself, or a file under a directory that the pattern matches; at any depth without a `/`."""
    anchored = "/" in pattern.rstrip("/")
    body = _glob(pattern.strip("/"))
    return re.compile(f"{'' if anchored else '(?:.*/)?'}{body}(?:/.*)?")


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_glob(pattern))


def _glob(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)
