"""The rules: who may run which command, when a fork's commit may deploy, what a worker does next, and backoff."""

from __future__ import annotations

import datetime as dt

from ghapp.core.contract import Action, Desired, Status
from ghapp.core.model import Environment

WRITERS = ("admin", "maintain", "write")
# What the author of a same-repository PR may do without write access.
AUTHOR_COMMANDS = ("redeploy", "destroy", "sleep", "wake", "keep", "keep off")


def is_fork(head_repo_id: int | None, base_repo_id: int) -> bool:
    """A PR from another repository; a deleted fork (head repository null) counts as one."""
    return head_repo_id != base_repo_id


def fork_gated(fork: bool, allow_forks: bool) -> bool:
    """Whether each commit of this PR needs a maintainer's approval before it deploys."""
    return fork and not allow_forks


def may_run(command: str, permission: str, author: str, pr_author: str, fork: bool) -> bool:
    """Writers may do anything; the author of a same-repository PR may redeploy or destroy it."""
    if command == "help" or permission in WRITERS:
        return True
    return command in AUTHOR_COMMANDS and author.lower() == pr_author.lower() and not fork


def awaiting_approval(env: Environment, allow_forks: bool) -> bool:
    """A gated fork PR whose head commit nobody approved yet."""
    return (
        fork_gated(env.is_fork, allow_forks)
        and env.desired_sha != env.head_sha
        and env.approved_sha != env.head_sha
        and env.status != Status.DESTROYING
    )


def next_action(desired: Desired, provisioned: bool) -> Action | None:
    """The Terraform run that converges an environment; None when it converges without one (absent, never
    provisioned)."""
    if desired == Desired.PRESENT:
        return Action.APPLY
    return Action.DESTROY if provisioned else None


def backoff(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff: seconds to wait before the `attempt`-th retry (1, 2, ...)."""
    return min(cap, base * (1 << max(0, attempt - 1)))  # 2**n, as an int for the type checker


def retry_delay(attempts: int, base: float, cap: float, max_attempts: int) -> float | None:
    """Seconds until the next try after the `attempts`-th failure; None: stop retrying."""
    if attempts >= max_attempts:
        return None
    return backoff(attempts, base, cap)


def preview_ttl(operator_default: float, repository_value: float | None = None) -> float:
    """How long a preview lives after its last activity: its repository's `ttl`, else the operator's
    GHAPP_ENV_TTL."""
    return repository_value if repository_value is not None else operator_default


def expiry(last_activity: dt.datetime, ttl: float, keep: bool) -> dt.datetime | None:
    """When a preview expires: `ttl` seconds after its last activity (a push, a deploy command); None: never, it is
    kept (`/preview keep`, until the PR closes). The SQL that writes expires_at calls the same rule
    (`preview_expiry`, migration 016)."""
    return None if keep else last_activity + dt.timedelta(seconds=ttl)


def reminder_due(expires_at: dt.datetime | None, warning: float, now: dt.datetime) -> bool:
    """Whether the "expires in ..." reminder is due: the preview expires within `warning` seconds and has not yet.
    (db/desired.remind_expiry selects with the same rule.)"""
    return expires_at is not None and now < expires_at <= now + dt.timedelta(seconds=warning)


def may_spend_optional(remaining: int | None, reserve: int) -> bool:
    """Optional GitHub work (the resync) goes ahead only while the installation's remaining requests (from the
    last `x-ratelimit-remaining` seen; None: not known yet) stay above the reserve kept for what people wait for."""
    return remaining is None or remaining > reserve


def next_slice(keys: list[int], after: int | None, size: int) -> tuple[list[int], int | None]:
    """Up to `size` of the sorted `keys` that follow `after`, wrapping around to the start; and where the next
    slice starts (the last key taken). A pass over many repositories is spread over several intervals this way."""
    if not keys:
        return [], None
    start = 0 if after is None else next((i for i, k in enumerate(keys) if k > after), 0)
    taken = (keys[start:] + keys[:start])[: max(1, size)]
    return taken, taken[-1]


def preview_cap(operator_default: int | None, repository_value: int | None = None) -> int | None:
    """The cap on live previews of a repository: the lower of its own `max_previews` and the operator's
    GHAPP_MAX_PREVIEWS (a ceiling: a pull request's file must not lift it); None: neither sets one. (The claim's
    SQL, db/runs.py, applies the same rule as `least(max_previews, $cap)`, which skips NULLs.)"""
    caps = [c for c in (repository_value, operator_default) if c is not None]
    return min(caps) if caps else None


def may_start_preview(live: int, position: int, cap: int | None) -> bool:
    """Whether the `position`-th new preview in line (1 = oldest request) may start while `live` previews of its
    repository exist. Updates of live previews and destroys are never held back."""
    return cap is None or live + position <= cap


def claim_key(
    destroy: bool, repo_in_flight: int, author_in_flight: int, due_at: float, env_id: int
) -> tuple[bool, int, int, float, int]:
    """Which due environment a free run slot takes first (the smallest key): destroys (they free resources), then
    the repository with the fewest runs in flight, then the author with the fewest, then the longest due. The
    claim's SQL (db/runs.py) orders by exactly this, counting leases held across every replica."""
    return (not destroy, repo_in_flight, author_in_flight, due_at, env_id)


# --- sleep and wake ----------------------------------------------------------------------------------------------
#
# Sleeping is a desired state like any other: putting a preview to sleep or waking it bumps the generation, and the
# reconciler applies the module with `sleeping` set accordingly. A new commit to deploy (a push, `/preview deploy`,
# `/preview redeploy`) wakes a sleeping preview: someone is working on it, and the check run must say whether the
# new commit really starts, not only that it was recorded while asleep. The idle sleeper puts it back to sleep
# after `sleep_after` without a request.


def sleep_after(operator_default: float | None, repository_value: float | None = None) -> float | None:
    """Seconds without a request after which an active preview sleeps: its configuration's `sleep_after`, else
    GHAPP_SLEEP_AFTER; None: never by itself. (The sleeper's SQL, db/sleep.py, applies the same rule as
    `coalesce(sleep_after, $default)`.)"""
    return repository_value if repository_value is not None else operator_default


def idle_since(env: Environment) -> dt.datetime:
    """Since when nobody asked for the preview: its last request through the gateway, or its last push or deploy
    request (a preview nobody has requested yet is idle since it was asked for)."""
    if env.last_request_at is None:
        return env.last_activity_at
    return max(env.last_request_at, env.last_activity_at)


def should_sleep(env: Environment, operator_default: float | None, now: dt.datetime) -> bool:
    """Whether the idle sleeper puts `env` to sleep now: an active, converged, awake preview idle for its
    `sleep_after`."""
    after = sleep_after(operator_default, env.sleep_after)
    return (
        after is not None
        and env.status == Status.ACTIVE
        and env.desired == Desired.PRESENT
        and not env.desired_sleeping
        and env.converged
        and (now - idle_since(env)).total_seconds() >= after
    )


def stays_asleep(sleeping: bool, new_commit: bool) -> bool:
    """The desired sleep after a pull request event: a new commit to deploy wakes the preview."""
    return sleeping and not new_commit


def status_after_apply(sleeping: bool) -> Status:
    """A successful apply leaves the preview `sleeping` when it was applied with `sleeping = true`."""
    return Status.SLEEPING if sleeping else Status.ACTIVE


def asleep(env: Environment) -> bool:
    """A request to this preview must wake it first: it sleeps, or is asked to (a sleep under way)."""
    return env.desired == Desired.PRESENT and (env.desired_sleeping or env.status == Status.SLEEPING)


def wants_page(accept: str) -> bool:
    """A browser navigating (it accepts HTML) gets the "waking up" page; other clients are held until ready."""
    return "text/html" in accept.lower()


def waking(env: Environment) -> bool:
    """A wake was asked for and the preview is not serving yet."""
    return (
        env.desired == Desired.PRESENT
        and not env.desired_sleeping
        and env.status != Status.ACTIVE
        and (env.wake_requested_at is not None or env.status == Status.SLEEPING)
    )
