"""A pull request as GitHub describes it (a webhook payload, or a REST object) → a `PullRequestChange`."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ghapp.core.contract import Desired
from ghapp.core.model import PullRequestChange
from ghapp.core.payload import MalformedPayload, field, integer, text
from ghapp.core.policy import is_fork

_SHA = re.compile(r"[0-9a-f]{40}")


def change_from_pull(pr: Any, desired: Desired, installation_id: int | None) -> PullRequestChange:
    """From a pull request object (REST `GET /pulls/{n}` or a payload's `pull_request`): the base repository is
    `pr.base.repo`."""
    return _change(pr, field(pr, "base.repo", dict), integer(pr, "number", bits=31), desired, installation_id)


def change_from_payload(data: Any, desired: Desired) -> PullRequestChange:
    """From a `pull_request` webhook payload."""
    pr = field(data, "pull_request", dict)
    number = integer(data, "number", bits=31) if "number" in data else integer(pr, "number", bits=31)
    installation_id = integer(data, "installation.id", optional=True)
    action = data.get("action") if isinstance(data.get("action"), str) else ""
    return _change(pr, field(data, "repository", dict), number, desired, installation_id, action)


def pull_request_key(data: Any) -> tuple[int, int]:
    """(repository id, number) of a `pull_request` webhook payload: the environment it is about, as
    `change_from_payload` finds it."""
    number = integer(data, "number", bits=31) if "number" in data else integer(data, "pull_request.number", bits=31)
    return integer(data, "repository.id"), number


def _change(
    pr: Any,
    base_repo: dict[str, Any],
    number: int | None,
    desired: Desired,
    installation_id: int | None,
    action: str = "",
) -> PullRequestChange:
    sha = field(pr, "head.sha", str)
    if not _SHA.fullmatch(sha):
        raise MalformedPayload("pull_request.head.sha is not a commit SHA")
    base_repo_id = integer(base_repo, "id")
    assert base_repo_id is not None and number is not None  # not optional: `integer` raised otherwise
    return PullRequestChange(
        repo_id=base_repo_id,
        repository=text(base_repo, "full_name", limit=255),
        pr_number=number,
        desired=desired,
        head_sha=sha,
        head_ref=text(pr, "head.ref", limit=255),
        author=text(pr, "user.login", limit=100, optional=True),
        title=text(pr, "title", limit=500, optional=True),
        pr_url=text(pr, "html_url", limit=500, optional=True),
        installation_id=installation_id,
        is_fork=is_fork(integer(pr, "head.repo.id", optional=True), base_repo_id),  # null: the fork was deleted
        updated_at=timestamp(pr, "updated_at"),
        action=action[:40],
        base_ref=text(pr, "base.ref", limit=255, optional=True),
        draft=field(pr, "draft", bool, optional=True) is True,
        labels=labels(pr),
    )


MAX_LABELS = 100  # GitHub allows 100 labels on an issue or pull request


def labels(pr: Any) -> tuple[str, ...]:
    """The names of the pull request's labels (`pull_request.labels[].name`), in GitHub's order."""
    found = field(pr, "labels", list, optional=True) or []
    if len(found) > MAX_LABELS or not all(isinstance(label, dict) for label in found):
        raise MalformedPayload("pull_request.labels must be at most 100 label objects")
    return tuple(text(label, "name", limit=100) for label in found)


def timestamp(data: Any, path: str) -> dt.datetime | None:
    """An ISO 8601 time GitHub gives (`2019-05-15T15:20:33Z`), timezone-aware; None when it is missing. A value
    that is not such a time is a `MalformedPayload`: a time without a zone cannot be compared safely."""
    value = field(data, path, str, optional=True)
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if len(value) <= 40 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise MalformedPayload(f"{path} is not an ISO 8601 time with a timezone")
    return parsed
