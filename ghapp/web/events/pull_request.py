"""`pull_request`: opened, reopened, pushed to or ready → present at the head SHA; closed → absent. Labels, draft
state and the base branch (`labeled`, `unlabeled`, `converted_to_draft`, `edited`) are the facts the deploy rules
look at: they are kept (what should exist and its expiry stay), and resolve the preview again when they may change
it."""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

from ghapp.core.contract import Desired
from ghapp.core.payload import field
from ghapp.core.policy import fork_gated
from ghapp.core.pulls import change_from_payload
from ghapp.db import desired

router = Router()

PRESENT_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")
FACT_ACTIONS = ("labeled", "unlabeled", "converted_to_draft", "edited")


async def _write(
    event: Event,
    wanted: Desired,
    *,
    conn,
    settings,
    result: dict,
    facts_only: bool = False,
    locked: desired.LockedRows | None = None,
    **_deps,
) -> None:
    change = change_from_payload(event.data, wanted)
    gated = fork_gated(change.is_fork, settings.allow_forks)
    try:
        env_id = await desired.apply_change(
            conn, change, settings.env_ttl, settings.push_settle, gated=gated, facts_only=facts_only, locked=locked
        )
    except desired.Outdated as e:  # a replayed or late delivery: what it says is no longer true
        result["ignored"] = "an older state of this pull request than one already applied"
        result["environment_id"] = e.env_id
        return
    if env_id is None:
        result["ignored"] = "no environment for this pull request"
    else:
        result["environment_id"] = env_id


async def present(event: Event, **deps) -> None:
    await _write(event, Desired.PRESENT, **deps)


async def facts(event: Event, *, result: dict, **deps) -> None:
    """Labels, draft or base changed: kept for an open pull request that has an environment."""
    if field(event.data, "pull_request.state", str) != "open":
        result["ignored"] = "a closed pull request"
        return
    await _write(event, Desired.PRESENT, result=result, facts_only=True, **deps)


for _action in PRESENT_ACTIONS:
    router.add(present, "pull_request", action=_action)
for _action in FACT_ACTIONS:
    router.add(facts, "pull_request", action=_action)


@router.register("pull_request", action="closed")
async def closed(event: Event, **deps) -> None:
    await _write(event, Desired.ABSENT, **deps)
