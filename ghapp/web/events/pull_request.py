"""`pull_request`: opened, reopened, pushed to or ready → present at the head SHA; closed → absent."""

from __future__ import annotations

import logging
import re

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.contract import Desired
from ghapp.core.payload import MalformedPayload, field, integer, text
from ghapp.db import store
from ghapp.db.store import PullRequestChange

log = logging.getLogger(__name__)
router = Router()

PRESENT_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")
_SHA = re.compile(r"[0-9a-f]{40}")


def change_from_payload(data: dict, desired: Desired) -> PullRequestChange:
    """The desired state a `pull_request` payload asks for (pure)."""
    pr = field(data, "pull_request", dict)
    sha = field(pr, "head.sha", str)
    if not _SHA.fullmatch(sha):
        raise MalformedPayload("pull_request.head.sha is not a commit SHA")
    base_repo_id = integer(data, "repository.id")
    head_repo_id = integer(pr, "head.repo.id", optional=True)  # null when the fork was deleted
    return PullRequestChange(
        repo_id=base_repo_id,
        repository=text(data, "repository.full_name", limit=255),
        pr_number=integer(data, "number", bits=31) if "number" in data else integer(pr, "number", bits=31),
        desired=desired,
        head_sha=sha,
        head_ref=text(pr, "head.ref", limit=255),
        author=text(pr, "user.login", limit=100, optional=True),
        title=text(pr, "title", limit=500, optional=True),
        pr_url=text(pr, "html_url", limit=500, optional=True),
        installation_id=integer(data, "installation.id", optional=True),
        is_fork=head_repo_id != base_repo_id,
    )


async def _write(event: Event, desired: Desired, *, conn, settings, result: dict, **_deps) -> None:
    change = change_from_payload(event.data, desired)
    env_id = await store.apply_change(
        conn, change, settings.env_ttl, settings.push_settle, gate_forks=not settings.allow_forks
    )
    if env_id is None:
        result["ignored"] = "no environment for this pull request"
    else:
        result["environment_id"] = env_id


async def present(event: Event, **deps) -> None:
    await _write(event, Desired.PRESENT, **deps)


for _action in PRESENT_ACTIONS:
    router.add(present, "pull_request", action=_action)


@router.register("pull_request", action="closed")
async def closed(event: Event, **deps) -> None:
    await _write(event, Desired.ABSENT, **deps)
