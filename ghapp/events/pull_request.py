"""`pull_request`: opened, reopened, pushed to or ready → present at the head SHA; closed → absent."""
from __future__ import annotations

import logging
import re

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp import store
from ghapp.contract import Desired
from ghapp.events.payload import MalformedPayload, field
from ghapp.store import PullRequestChange

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
    base_repo_id = field(data, "repository.id", int)
    head_repo_id = field(pr, "head.repo.id", int, optional=True)  # null when the fork was deleted
    return PullRequestChange(
        repo_id=base_repo_id,
        repository=field(data, "repository.full_name", str),
        pr_number=field(data, "number", int) if "number" in data else field(pr, "number", int),
        desired=desired,
        head_sha=sha,
        head_ref=field(pr, "head.ref", str)[:255],
        author=field(pr, "user.login", str, optional=True) or "",
        title=(field(pr, "title", str, optional=True) or "")[:500],
        pr_url=field(pr, "html_url", str, optional=True) or "",
        installation_id=field(data, "installation.id", int, optional=True),
        is_fork=head_repo_id != base_repo_id,
    )


async def _write(event: Event, desired: Desired, *, conn, settings, result: dict) -> None:
    change = change_from_payload(event.data, desired)
    if change.is_fork and desired is Desired.PRESENT and not settings.allow_forks:
        log.info("%s#%d: fork PR not deployed automatically (GHAPP_ALLOW_FORKS=false)",
                 change.repository, change.pr_number)
        result["ignored"] = "fork pull requests are not deployed automatically"
        return
    result["environment_id"] = await store.apply_change(conn, change, settings.env_ttl, settings.push_settle)


async def present(event: Event, **deps) -> None:
    await _write(event, Desired.PRESENT, **deps)


for _action in PRESENT_ACTIONS:
    router.add(present, "pull_request", action=_action)


@router.register("pull_request", action="closed")
async def closed(event: Event, **deps) -> None:
    await _write(event, Desired.ABSENT, **deps)
