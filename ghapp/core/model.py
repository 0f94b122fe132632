"""The domain model: a pull request's environment, a change to what should exist, and the desired-state rule."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ghapp.core.contract import Access, Desired, Hold, Status


@dataclasses.dataclass(frozen=True)
class PullRequestChange:
    """What an event (or GitHub's answer about a pull request) says should exist for one PR."""

    repo_id: int
    repository: str
    pr_number: int
    desired: Desired
    head_sha: str
    head_ref: str = ""
    author: str = ""
    title: str = ""
    pr_url: str = ""
    installation_id: int | None = None
    is_fork: bool = False
    updated_at: dt.datetime | None = None  # the pull request's `updated_at` as GitHub stated it (whole seconds)
    action: str = ""  # the webhook's action (`opened`, `closed`, ...); empty for a REST answer
    base_ref: str = ""
    draft: bool = False
    labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class AppliedEvent:
    """The newest pull request state applied to an environment: GitHub's `updated_at` and whether it was closed."""

    updated_at: dt.datetime | None
    closed: bool


def outdated(change: PullRequestChange, applied: AppliedEvent | None) -> bool:
    """Whether `change` is older than what was applied, so it must change nothing (a replayed or late delivery).

    GitHub's `updated_at` has whole seconds. Older: ignored. Newer: applied. The same second: applied (a
    redelivery of the newest event is idempotent; a `synchronize` then a `closed` in one second both count),
    except that once a `closed` of that second is applied only a `reopened` of it may bring the PR back: GitHub
    sends no other event for a closed pull request, so a same-second `opened`/`synchronize` arriving after the
    `closed` was sent before it (or is a replay). Only GitHub's timestamps are compared, never the local clock."""
    if change.updated_at is None or applied is None or applied.updated_at is None:
        return False
    if change.updated_at != applied.updated_at:
        return change.updated_at < applied.updated_at
    return applied.closed and change.desired is Desired.PRESENT and change.action != "reopened"


@dataclasses.dataclass(frozen=True)
class CurrentDesire:
    """The part of an existing environment that decides what a change does to it."""

    desired: Desired
    desired_sha: str | None
    approved_sha: str | None


def desired_state(change: PullRequestChange, current: CurrentDesire | None, gated: bool) -> tuple[Desired, str | None]:
    """What should exist after this change. A gated fork PR deploys only a commit a maintainer approved; an
    unapproved push leaves what exists as it is."""
    if change.desired is Desired.ABSENT:
        return Desired.ABSENT, current.desired_sha if current else None
    if not gated or (current is not None and current.approved_sha == change.head_sha):
        return Desired.PRESENT, change.head_sha
    if current is None:
        return Desired.ABSENT, None
    return current.desired, current.desired_sha


@dataclasses.dataclass(frozen=True)
class Environment:
    """One pull request's environment: identity, desired and observed state, and what GitHub was last shown."""

    id: int
    repo_id: int
    repository: str
    pr_number: int
    name: str
    installation_id: int | None
    head_ref: str
    author: str
    title: str
    pr_url: str
    is_fork: bool
    desired: Desired
    desired_sha: str | None
    generation: int
    observed_generation: int
    status: Status
    provisioned: bool
    deployed_sha: str | None
    preview_url: str | None
    outputs: dict[str, Any]
    progress: dict[str, Any] | None
    lease_owner: str | None
    lease_until: dt.datetime | None
    attempts: int
    next_attempt_at: dt.datetime | None
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    last_activity_at: dt.datetime
    expires_at: dt.datetime | None
    head_sha: str | None = None
    approved_sha: str | None = None
    version: int = 0
    published_version: int = 0
    published: dict[str, Any] = dataclasses.field(default_factory=dict)
    publish_attempts: int = 0
    github_gone: bool = False
    expired_at: dt.datetime | None = None
    max_previews: int | None = None  # this repository's cap on live previews; None: the operator's default
    base_ref: str = ""
    draft: bool = False
    labels: list[str] = dataclasses.field(default_factory=list)
    deploy_requested: bool = False  # `deploy: manual`: someone asked for this preview
    keep: bool = False  # `/preview keep`: no expiry while the PR is open
    ttl: float | None = None  # seconds of life after the last activity (`ttl`); None: the operator's GHAPP_ENV_TTL
    expiry_warned_at: dt.datetime | None = None
    config: dict[str, Any] | None = None  # the effective configuration last resolved
    config_source: str | None = None  # `repository`, `organization` or `operator`
    config_blob_sha: str | None = None
    module: str | None = None  # the Terraform directory it was last applied with; None: the operator's
    hold: Hold | None = None
    hold_reason: str | None = None
    access: Access | None = None  # None: the operator's default
    sleep_after: float | None = None  # seconds without a request through the gateway; None: never sleeps
    desired_sleeping: bool = False
    last_request_at: dt.datetime | None = None
    wake_requested_at: dt.datetime | None = None  # a request asked this sleeping preview to wake; None once active

    @property
    def label(self) -> str:
        """`owner/repo#12`, as people write it."""
        return f"{self.repository}#{self.pr_number}"

    @property
    def converged(self) -> bool:
        return self.observed_generation >= self.generation
