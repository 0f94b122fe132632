"""Desired state, written by events, commands, the resync and the expiry: every change bumps the generation and
wakes the workers (NOTIFY in the same transaction)."""

from __future__ import annotations

import dataclasses
import json

import asyncpg

from ghapp.core.contract import NOTIFY_CHANNEL, Desired, environment_name
from ghapp.core.model import AppliedEvent, CurrentDesire, PullRequestChange, desired_state, outdated
from ghapp.core.policy import stays_asleep
from ghapp.core.rules import PullFacts, resolve_again

_INSERT = """
INSERT INTO environments (id, name, repo_id, repository, pr_number, installation_id, head_ref, author, title, pr_url,
                          is_fork, desired, desired_sha, head_sha, expires_at, observed_generation, pr_updated_at,
                          pr_closed, base_ref, draft, labels)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now() + make_interval(secs => $15),
        CASE WHEN $12 = 'absent' THEN 1 ELSE 0 END, $17, $18, $19, $20, $21)
ON CONFLICT (repo_id, pr_number) DO NOTHING
RETURNING id, pg_notify($16, id::text)
"""

# What `apply_change` reads of the environment before it writes it (_CURRENT, _LOCK) is what _UPDATE returns.
_CURRENT = """
SELECT id, desired, desired_sha, approved_sha, pr_updated_at, pr_closed, desired_sleeping, head_sha, head_ref,
       base_ref, draft, labels, deploy_requested, config, hold
FROM environments WHERE repo_id = $1 AND pr_number = $2 FOR UPDATE
"""

_LOCK = """
SELECT repo_id, pr_number, id, desired, desired_sha, approved_sha, pr_updated_at, pr_closed, desired_sleeping, head_sha,
       head_ref, base_ref, draft, labels, deploy_requested, config, hold
FROM environments WHERE (repo_id, pr_number) IN (SELECT * FROM unnest($1::bigint[], $2::int[]))
ORDER BY id FOR UPDATE
"""

# $12: the operator's TTL (the environment's own `ttl` wins); $15: whether (desired, desired_sha) changed;
# $16, $17: the pull request's `updated_at` and closed state (kept when the change has none); $18: the desired sleep
# (a new commit wakes the preview). A burst of pushes settles into one run at the last SHA ($13 seconds); a destroy
# is due at once. $19-$21: the facts the deploy rules look at; $22: they changed in a way that may change how the
# preview is resolved (a new generation, due now); $23: the expiry restarts (not for labels, drafts, a base).
_UPDATE = """
UPDATE environments AS e SET
    repository = $2, installation_id = coalesce($3, e.installation_id), head_ref = $4, author = $5, title = $6,
    pr_url = $7, is_fork = $8, head_sha = $11,
    desired = $9, desired_sha = $10, base_ref = $19, draft = $20, labels = $21,
    pr_updated_at = coalesce($16, e.pr_updated_at), pr_closed = CASE WHEN $16 IS NULL THEN e.pr_closed ELSE $17 END,
    generation = e.generation + (CASE WHEN $15 OR $22 THEN 1 ELSE 0 END),
    status = CASE WHEN $15 AND e.status IN ('active', 'sleeping', 'destroyed', 'failed') THEN 'pending'
                  WHEN $22 AND e.status IN ('destroyed', 'failed') THEN 'pending' ELSE e.status END,
    desired_sleeping = $18,
    hold = CASE WHEN $15 THEN NULL ELSE e.hold END,  -- a new commit is resolved afresh
    hold_reason = CASE WHEN $15 THEN NULL ELSE e.hold_reason END,
    attempts = CASE WHEN $15 OR $22 THEN 0 ELSE e.attempts END,
    next_attempt_at = CASE WHEN $15 AND $9 = 'present' THEN now() + make_interval(secs => $13)
                           WHEN $15 OR $22 THEN now() ELSE e.next_attempt_at END,
    last_activity_at = CASE WHEN $23 THEN now() ELSE e.last_activity_at END,
    expires_at = CASE WHEN $9 = 'present' AND $23 THEN preview_expiry(now(), coalesce(e.ttl, $12), e.keep)
                      ELSE e.expires_at END,
    expiry_warned_at = CASE WHEN $9 = 'present' AND $23 THEN NULL ELSE e.expiry_warned_at END,
    keep = e.keep AND $9 = 'present',  -- kept while the PR is open
    expired_at = CASE WHEN $9 = 'present' THEN NULL ELSE e.expired_at END,
    approved_sha = CASE WHEN $9 = 'absent' THEN NULL ELSE e.approved_sha END,  -- a closed PR's approval ends
    github_gone = false,
    updated_at = now()
WHERE e.id = $1
RETURNING id, desired, desired_sha, approved_sha, pr_updated_at, pr_closed, desired_sleeping, head_sha, head_ref,
          base_ref, draft, labels, deploy_requested, config, hold, pg_notify($14, id::text)
"""

# Desired absent for the environments `$1` that are present: a new generation, due now. `$2` remembers that they
# expired; `$3` that GitHub is gone for them (uninstalled). Every destroy ends a fork's approval (re-pushing the
# once-approved commit needs a maintainer again), `/preview keep`, and a request under `deploy: manual` (it comes
# back on request).
_ABSENT = """
UPDATE environments SET desired = 'absent', updated_at = now(), approved_sha = NULL, keep = false,
    deploy_requested = false,
    generation = generation + (CASE WHEN desired = 'present' THEN 1 ELSE 0 END),
    next_attempt_at = CASE WHEN desired = 'present' THEN now() ELSE next_attempt_at END,
    attempts = CASE WHEN desired = 'present' THEN 0 ELSE attempts END,
    status = CASE WHEN desired = 'present' AND status IN ('active', 'sleeping', 'failed', 'pending') THEN 'pending'
                  ELSE status END,
    expired_at = CASE WHEN $2 AND desired = 'present' THEN now() ELSE expired_at END,
    wake_requested_at = NULL,
    github_gone = github_gone OR $3
WHERE id = ANY($1::bigint[])
RETURNING id, pg_notify($4, id::text)
"""


class Outdated(Exception):
    """The change is older than what the environment already applied (a replayed or late delivery)."""

    def __init__(self, env_id: int) -> None:
        super().__init__(f"environment {env_id} already applied a newer state of its pull request")
        self.env_id = env_id


class LockedRows:
    """The environments of several pull requests (a batch of deliveries), read and locked in one statement with
    `lock`, and written together: `apply_change` takes a pull request's row from here instead of reading it, and
    leaves its UPDATE here; `flush()` sends the UPDATEs left in one round trip (pipelined) and keeps the rows they
    return, so the next change to the same pull request (which flushes first) starts from what was written. A pull
    request without an environment is `None` until one is inserted; one not locked here is read as usual. Whoever
    reads or writes these environments by other means in the same transaction flushes first."""

    def __init__(self, conn: asyncpg.Connection, rows: dict[tuple[int, int], asyncpg.Record | None]) -> None:
        self.conn = conn
        self.rows = rows
        self._updates: dict[tuple[int, int], tuple] = {}  # at most one per pull request: a second one flushes

    @classmethod
    async def lock(cls, conn: asyncpg.Connection, pull_requests: list[tuple[int, int]]) -> LockedRows:
        """(repo_id, pr_number) pairs; inside the caller's transaction, which keeps the locks."""
        wanted = list(dict.fromkeys(pull_requests))
        if not wanted:
            return cls(conn, {})
        found = await conn.fetch(_LOCK, [repo_id for repo_id, _n in wanted], [number for _r, number in wanted])
        rows: dict[tuple[int, int], asyncpg.Record | None] = dict.fromkeys(wanted)
        rows.update({(r["repo_id"], r["pr_number"]): r for r in found})
        return cls(conn, rows)

    async def current(self, key: tuple[int, int]) -> asyncpg.Record | None:
        if key in self._updates:
            await self.flush()
        return self.rows[key]

    def update(self, key: tuple[int, int], update: tuple) -> None:
        """Leave the UPDATE of this pull request's environment (_UPDATE's arguments) for `flush()`."""
        self._updates[key] = update

    async def flush(self) -> None:
        if not self._updates:
            return
        keys, updates = list(self._updates), list(self._updates.values())
        self._updates = {}
        written = await self.conn.fetchmany(_UPDATE, updates)
        if len(written) != len(keys):  # each UPDATE is of one locked row
            raise RuntimeError(f"{len(keys)} environments updated, {len(written)} rows returned")
        self.rows.update(zip(keys, written, strict=True))


async def record_delivery(conn: asyncpg.Connection, delivery_id: str, event: str) -> bool:
    """False if this delivery id was accepted before (GitHub redelivered it)."""
    status = await conn.execute(
        "INSERT INTO deliveries (id, event) VALUES ($1, $2) ON CONFLICT DO NOTHING", delivery_id, event
    )
    return status == "INSERT 0 1"


async def apply_change(
    conn: asyncpg.Connection,
    change: PullRequestChange,
    ttl_seconds: float,
    settle_seconds: float = 0.0,
    gated: bool = True,
    facts_only: bool = False,
    locked: LockedRows | None = None,
) -> int | None:
    """Write the desired state of one PR (inside the caller's transaction); returns the environment id (None:
    nothing to do, e.g. closing an unknown PR). A new SHA for an existing environment is due after
    `settle_seconds`, so a burst of pushes ends in one run at the last SHA. `gated`: the fork rule applies.
    New labels, draft state or base branch are kept, and resolve the preview again when they may change its
    outcome (core/rules.resolve_again). `facts_only`: the change tells only those facts (`labeled`, `edited`, ...):
    what should exist, its commit and its expiry stay as they are, and a pull request without an environment gets
    none. Raises `Outdated` (changing nothing) for a change older than the pull request state already applied.
    `locked`: the rows of a batch, read and locked before (`LockedRows`)."""
    key = (change.repo_id, change.pr_number)
    if locked is not None and key in locked.rows:
        current = await locked.current(key)
    else:
        current = await conn.fetchrow(_CURRENT, *key)
    if current is None and (change.desired is Desired.ABSENT or facts_only):
        return None
    if current is not None and outdated(change, AppliedEvent(current["pr_updated_at"], current["pr_closed"])):
        raise Outdated(current["id"])
    closed = change.desired is Desired.ABSENT
    now = current and CurrentDesire(Desired(current["desired"]), current["desired_sha"], current["approved_sha"])
    desired, sha = desired_state(change, now, gated)
    if facts_only:
        assert current is not None  # returned above otherwise
        desired, sha = Desired(current["desired"]), current["desired_sha"]
        change = dataclasses.replace(change, head_sha=current["head_sha"] or change.head_sha)
    if current is None:
        env_id = await conn.fetchval("SELECT nextval('environments_id_seq')")
        inserted = await conn.fetchrow(
            _INSERT,
            env_id,
            environment_name(env_id, change.repository, change.pr_number),
            change.repo_id,
            change.repository,
            change.pr_number,
            change.installation_id,
            change.head_ref,
            change.author,
            change.title,
            change.pr_url,
            change.is_fork,
            str(desired),
            sha,
            change.head_sha,
            ttl_seconds,
            NOTIFY_CHANNEL,
            change.updated_at,
            closed,
            change.base_ref,
            change.draft,
            list(change.labels),
        )
        if inserted is not None:
            if locked is not None:
                locked.rows.pop(key, None)  # read again if the batch changes it once more
            return env_id
        return await apply_change(conn, change, ttl_seconds, settle_seconds, gated)  # inserted meanwhile
    facts_before = PullFacts(
        current["head_ref"],
        current["base_ref"],
        current["draft"],
        tuple(current["labels"]),
        current["deploy_requested"],
    )
    facts_now = dataclasses.replace(
        facts_before, base_ref=change.base_ref, draft=change.draft, labels=tuple(change.labels)
    )
    config = None if current["config"] is None else json.loads(current["config"])
    desire_changed = (current["desired"], current["desired_sha"]) != (str(desired), sha)
    update = (
        current["id"],
        change.repository,
        change.installation_id,
        change.head_ref,
        change.author,
        change.title,
        change.pr_url,
        change.is_fork,
        str(desired),
        sha,
        change.head_sha,
        ttl_seconds,
        settle_seconds,
        NOTIFY_CHANNEL,
        desire_changed,
        change.updated_at,
        closed,
        stays_asleep(current["desired_sleeping"], desire_changed and desired is Desired.PRESENT),
        change.base_ref,
        change.draft,
        list(change.labels),
        desired is Desired.PRESENT and resolve_again(facts_before, facts_now, config, current["hold"] is not None),
        not facts_only,
    )
    if locked is not None and key in locked.rows:
        locked.update(key, update)
    else:
        await conn.fetchrow(_UPDATE, *update)
    return current["id"]


async def deploy_head(
    conn: asyncpg.Connection,
    env_id: int,
    sha: str,
    *,
    approve: bool,
    ttl_seconds: float,
    pr_head: str | None = None,
) -> None:
    """A person asked for `sha` to be deployed (again): desired present there, awake (policy.stays_asleep), a new
    generation even if nothing else changed (redeploy), and the preview is requested (`deploy: manual` deploys it
    from now on, until it is destroyed); `approve` records a maintainer's approval of a fork's commit. The PR's
    head is `pr_head` when the caller just read it from GitHub, else stays what events said: a commit pushed after
    the approved one keeps waiting for its own approval."""
    await conn.execute(
        """UPDATE environments SET desired = 'present', desired_sha = $2, head_sha = coalesce($5, head_sha, $2),
               approved_sha = CASE WHEN $3 THEN $2 ELSE approved_sha END, deploy_requested = true,
               generation = generation + 1, attempts = 0, next_attempt_at = now(), last_activity_at = now(),
               status = CASE WHEN status IN ('active', 'sleeping', 'destroyed', 'failed') THEN 'pending'
                             ELSE status END,
               desired_sleeping = false, wake_requested_at = NULL,
               expires_at = preview_expiry(now(), coalesce(ttl, $4), keep), expiry_warned_at = NULL,
               expired_at = NULL, updated_at = now()
           WHERE id = $1""",
        env_id,
        sha,
        approve,
        ttl_seconds,
        pr_head,
    )
    await notify(conn, env_id)


async def mark_absent(
    conn: asyncpg.Connection, env_ids: list[int], *, expired: bool = False, github_gone: bool = False
) -> list[int]:
    """Desired absent for these environments (those present get a new generation); returns the ids updated."""
    rows = await conn.fetch(_ABSENT, env_ids, expired, github_gone, NOTIFY_CHANNEL)
    return [r["id"] for r in rows]


async def expire(conn: asyncpg.Connection) -> list[int]:
    """Environments with no push for their TTL: destroyed, remembering why. Returns their ids."""
    async with conn.transaction():
        due = await conn.fetch(_EXPIRED)
        return await mark_absent(conn, [r["id"] for r in due], expired=True)


_EXPIRED = "SELECT id FROM environments WHERE desired = 'present' AND expires_at < now() FOR UPDATE SKIP LOCKED"


# policy.reminder_due, found through environments_expiry_reminder (migration 016).
_REMINDER_DUE = """
SELECT id, installation_id FROM environments
WHERE desired = 'present' AND expiry_warned_at IS NULL
  AND expires_at > now() AND expires_at <= now() + make_interval(secs => $1)
ORDER BY expires_at FOR UPDATE SKIP LOCKED"""


async def remind_expiry(conn: asyncpg.Connection, warning_seconds: float) -> list[asyncpg.Record]:
    """Present environments that expire within `warning_seconds` and were not reminded yet (policy.reminder_due),
    locked in the caller's transaction: `id` and `installation_id`."""
    return await conn.fetch(_REMINDER_DUE, warning_seconds)


async def mark_reminded(conn: asyncpg.Connection, env_ids: list[int]) -> None:
    """The reminder is due for these environments: the new version makes the publisher show it, once."""
    await conn.execute(
        "UPDATE environments SET expiry_warned_at = now() WHERE id = ANY($1::bigint[]) AND expiry_warned_at IS NULL",
        env_ids,
    )


async def set_keep(conn: asyncpg.Connection, env_id: int, keep: bool, ttl_seconds: float) -> None:
    """`/preview keep`: no expiry while the PR is open. `/preview keep off`: it expires again, its TTL (the
    environment's own, else `ttl_seconds`) counted from now, as after a push."""
    await conn.execute(
        """UPDATE environments SET keep = $2, expiry_warned_at = NULL, updated_at = now(),
               last_activity_at = CASE WHEN $2 THEN last_activity_at ELSE now() END,
               expires_at = CASE WHEN desired = 'present'
                                 THEN preview_expiry(CASE WHEN $2 THEN last_activity_at ELSE now() END,
                                                     coalesce(ttl, $3), $2)
                                 ELSE expires_at END
           WHERE id = $1""",
        env_id,
        keep,
        ttl_seconds,
    )


async def request_destroy(conn: asyncpg.Connection, env_id: int) -> bool:
    """An operator's destroy: desired absent whatever the PR says; a destroy that failed for good is tried
    again. False if no such environment."""
    async with conn.transaction():
        current = await conn.fetchval("SELECT desired FROM environments WHERE id = $1 FOR UPDATE", env_id)
        if current is None:
            return False
        if current == Desired.PRESENT:
            await mark_absent(conn, [env_id])
            return True
        await conn.execute(
            """UPDATE environments SET generation = generation + (CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
                   attempts = 0, next_attempt_at = now(), updated_at = now(), approved_sha = NULL,
                   deploy_requested = false
               WHERE id = $1""",
            env_id,
        )
        await notify(conn, env_id)
        return True


async def mark_closed(conn: asyncpg.Connection, env_id: int) -> None:
    """The PR was found closed (a missed `closed` event): destroy its environment."""
    await mark_absent(conn, [env_id])


async def installation_gone(conn: asyncpg.Connection, installation_id: int, repo_ids: list[int] | None = None) -> int:
    """The App was uninstalled or suspended (or removed from `repo_ids`): GitHub can no longer be told anything,
    and the environments are destroyed. Returns how many environments that touched."""
    rows = await conn.fetch(
        """SELECT id FROM environments
           WHERE installation_id = $1 AND ($2::bigint[] IS NULL OR repo_id = ANY($2::bigint[]))""",
        installation_id,
        repo_ids,
    )
    return len(await mark_absent(conn, [r["id"] for r in rows], github_gone=True))


async def installation_back(conn: asyncpg.Connection, installation_id: int) -> None:
    await conn.execute("UPDATE environments SET github_gone = false WHERE installation_id = $1", installation_id)


async def notify(conn: asyncpg.Connection, env_id: int) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(env_id))


async def checks_changed(conn: asyncpg.Connection, repo_id: int, sha: str, name: str | None = None) -> list[int]:
    """A check run, check suite or commit status of commit `sha` changed: the environments held waiting for checks
    at that commit are resolved again (a new generation, due now). `name`: the check run's name or the status's
    context; an environment whose configuration does not wait for it is left alone. Returns their ids."""
    rows = await conn.fetch(
        """UPDATE environments SET generation = generation + 1, attempts = 0, next_attempt_at = now(),
               updated_at = now()
           WHERE repo_id = $1 AND desired_sha = $2 AND hold = 'waiting' AND desired = 'present'
             AND ($3::text IS NULL OR config IS NULL OR config->'wait_for' ? $3)
           RETURNING id, pg_notify($4, id::text)""",
        repo_id,
        sha,
        name,
        NOTIFY_CHANNEL,
    )
    return [r["id"] for r in rows]
