"""All SQL: desired state written by events, work claimed and finished by workers, reads for the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import asyncpg

from ghapp.core.contract import NOTIFY_CHANNEL, Action, Desired, RunState, Status, environment_name


@dataclasses.dataclass(frozen=True)
class PullRequestChange:
    """What a `pull_request` event says should exist for one PR."""

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


@dataclasses.dataclass(frozen=True)
class DesiredNow:
    desired: str
    desired_sha: str | None
    approved_sha: str | None


def desired_state(change: PullRequestChange, current: DesiredNow | None, gated: bool) -> tuple[Desired, str | None]:
    """What should exist after this event (pure). A gated fork PR deploys only a commit a maintainer approved;
    an unapproved push leaves what exists as it is."""
    if change.desired is Desired.ABSENT:
        return Desired.ABSENT, current.desired_sha if current else None
    if not gated or (current is not None and current.approved_sha == change.head_sha):
        return Desired.PRESENT, change.head_sha
    if current is None:
        return Desired.ABSENT, None
    return Desired(current.desired), current.desired_sha


@dataclasses.dataclass(frozen=True)
class Environment:
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
    desired: str
    desired_sha: str | None
    generation: int
    observed_generation: int
    status: str
    provisioned: bool
    deployed_sha: str | None
    preview_url: str | None
    outputs: dict
    progress: dict | None
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
    published: dict = dataclasses.field(default_factory=dict)
    publish_attempts: int = 0
    github_gone: bool = False
    expired_at: dt.datetime | None = None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Environment:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in fields}
        for key in ("outputs", "progress", "published"):
            if isinstance(values.get(key), str):
                values[key] = json.loads(values[key])
        return cls(**values)


_INSERT = """
INSERT INTO environments (id, name, repo_id, repository, pr_number, installation_id, head_ref, author, title, pr_url,
                          is_fork, desired, desired_sha, head_sha, expires_at, observed_generation)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now() + make_interval(secs => $15),
        CASE WHEN $12 = 'absent' THEN 1 ELSE 0 END)
ON CONFLICT (repo_id, pr_number) DO NOTHING
RETURNING id, pg_notify($16, id::text)
"""

_UPDATE = """
UPDATE environments AS e SET
    repository = $2, installation_id = coalesce($3, e.installation_id), head_ref = $4, author = $5, title = $6,
    pr_url = $7, is_fork = $8, head_sha = $11,
    desired = $9, desired_sha = $10,
    generation = e.generation + (CASE WHEN {changed} THEN 1 ELSE 0 END),
    status = CASE WHEN {changed} AND e.status IN ('active', 'destroyed', 'failed') THEN 'pending' ELSE e.status END,
    attempts = CASE WHEN {changed} THEN 0 ELSE e.attempts END,
    -- a burst of pushes settles into one run at the last SHA; a destroy is due at once
    next_attempt_at = CASE WHEN NOT {changed} THEN e.next_attempt_at
                           WHEN $9 = 'present' THEN now() + make_interval(secs => $13) ELSE now() END,
    last_activity_at = now(),
    expires_at = CASE WHEN $9 = 'present' THEN now() + make_interval(secs => $12) ELSE e.expires_at END,
    expired_at = CASE WHEN $9 = 'present' THEN NULL ELSE e.expired_at END,
    github_gone = false,
    updated_at = now()
WHERE e.id = $1
RETURNING id, pg_notify($14, id::text)
""".format(changed="(e.desired, e.desired_sha) IS DISTINCT FROM ($9, $10)")


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
    gate_forks: bool = True,
) -> int | None:
    """Write the desired state of one PR (inside the caller's transaction); returns the environment id (None:
    nothing to do, e.g. closing an unknown PR). A new SHA for an existing environment is due after
    `settle_seconds`, so a burst of pushes ends in one run at the last SHA. Wakes the workers."""
    current = await conn.fetchrow(
        """SELECT id, desired, desired_sha, approved_sha FROM environments
           WHERE repo_id = $1 AND pr_number = $2 FOR UPDATE""",
        change.repo_id,
        change.pr_number,
    )
    if current is None and change.desired is Desired.ABSENT:
        return None
    now = current and DesiredNow(current["desired"], current["desired_sha"], current["approved_sha"])
    desired, sha = desired_state(change, now, gate_forks and change.is_fork)
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
        )
        if inserted is not None:
            return env_id
        return await apply_change(conn, change, ttl_seconds, settle_seconds, gate_forks)  # inserted meanwhile
    await conn.fetchrow(
        _UPDATE,
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
    )
    return current["id"]


async def deploy_head(
    conn: asyncpg.Connection, env_id: int, head_sha: str, *, approve: bool, ttl_seconds: float
) -> None:
    """A person asked for `head_sha` to be deployed (again): desired present there, a new generation even if
    nothing else changed (redeploy); `approve` records a maintainer's approval of a fork's commit."""
    await conn.execute(
        """UPDATE environments SET desired = 'present', desired_sha = $2, head_sha = $2,
               approved_sha = CASE WHEN $3 THEN $2 ELSE approved_sha END,
               generation = generation + 1, attempts = 0, next_attempt_at = now(), last_activity_at = now(),
               status = CASE WHEN status IN ('active', 'destroyed', 'failed') THEN 'pending' ELSE status END,
               expires_at = now() + make_interval(secs => $4), expired_at = NULL, updated_at = now()
           WHERE id = $1""",
        env_id,
        head_sha,
        approve,
        ttl_seconds,
    )
    await notify(conn, env_id)


ABSENT = """desired = 'absent', updated_at = now(),
    generation = generation + (CASE WHEN desired = 'present' THEN 1 ELSE 0 END),
    next_attempt_at = CASE WHEN desired = 'present' THEN now() ELSE next_attempt_at END,
    attempts = CASE WHEN desired = 'present' THEN 0 ELSE attempts END,
    status = CASE WHEN desired = 'present' AND status IN ('active', 'failed', 'pending') THEN 'pending'
                  ELSE status END"""


async def expire(conn: asyncpg.Connection) -> list[int]:
    """Environments with no push for their TTL: destroyed, remembering why. Returns their ids."""
    rows = await conn.fetch(
        f"""UPDATE environments SET expired_at = now(), {ABSENT}
            WHERE desired = 'present' AND expires_at < now() RETURNING id"""
    )
    for row in rows:
        await notify(conn, row["id"])
    return [r["id"] for r in rows]


async def request_destroy(conn: asyncpg.Connection, env_id: int) -> bool:
    """An operator's destroy: desired absent whatever the PR says; a destroy that failed for good is tried
    again. False if no such environment."""
    status = await conn.execute(f"UPDATE environments SET {ABSENT} WHERE id = $1 AND desired = 'present'", env_id)
    if status == "UPDATE 0":
        status = await conn.execute(
            """UPDATE environments SET generation = generation + (CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
                   attempts = 0, next_attempt_at = now(), updated_at = now()
               WHERE id = $1""",
            env_id,
        )
    if status == "UPDATE 0":
        return False
    await notify(conn, env_id)
    return True


async def mark_closed(conn: asyncpg.Connection, env_id: int) -> None:
    """The PR was found closed (a missed `closed` event): destroy its environment."""
    await conn.execute(f"UPDATE environments SET {ABSENT} WHERE id = $1 AND desired = 'present'", env_id)
    await notify(conn, env_id)


async def notify(conn: asyncpg.Connection, env_id: int) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(env_id))


# --- workers -------------------------------------------------------------------------------------------------------


async def claim(conn: asyncpg.Connection, owner: str, lease_seconds: float) -> Environment | None:
    """Take the lease of one unconverged environment that is due and not leased by a live worker."""
    row = await conn.fetchrow(
        """UPDATE environments SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
           WHERE id = (SELECT id FROM environments
                       WHERE generation > observed_generation AND next_attempt_at <= now()
                         AND (lease_until IS NULL OR lease_until < now())
                       ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        owner,
        lease_seconds,
    )
    return Environment.from_record(row) if row else None


async def seconds_until_due(conn: asyncpg.Connection) -> float | None:
    """When the next unconverged environment becomes due (retry backoff, settling pushes); None if none waits."""
    return await conn.fetchval(
        """SELECT greatest(0, extract(epoch FROM min(greatest(next_attempt_at, lease_until)) - now()))::float8
           FROM environments WHERE generation > observed_generation AND next_attempt_at IS NOT NULL"""
    )


async def renew_lease(conn: asyncpg.Connection, env_id: int, owner: str, lease_seconds: float) -> int | None:
    """Extend our lease; returns the current generation, or None if the lease is no longer ours."""
    return await conn.fetchval(
        """UPDATE environments SET lease_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND lease_owner = $2 RETURNING generation""",
        env_id,
        owner,
        lease_seconds,
    )


async def start_run(conn: asyncpg.Connection, env: Environment, action: Action, owner: str) -> int:
    async with conn.transaction():
        await conn.execute(
            """UPDATE runs SET state = 'abandoned', finished_at = now(), error = 'the worker running it stopped'
               WHERE environment_id = $1 AND state = 'running'""",
            env.id,
        )
        await conn.execute(
            """UPDATE environments SET status = $2, updated_at = now(), provisioned = provisioned OR $3
               WHERE id = $1""",
            env.id,
            str(Status.CREATING if action is Action.APPLY else Status.DESTROYING),
            action is Action.APPLY,
        )
        sha = env.desired_sha if action is Action.APPLY else env.deployed_sha
        return await conn.fetchval(
            """INSERT INTO runs (environment_id, action, sha, generation, owner) VALUES ($1, $2, $3, $4, $5)
               RETURNING id""",
            env.id,
            str(action),
            sha,
            env.generation,
            owner,
        )


async def append_logs(conn: asyncpg.Connection, run_id: int, first_seq: int, lines: list[str]) -> None:
    await conn.executemany(
        "INSERT INTO run_logs (run_id, seq, line) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(run_id, first_seq + i, line) for i, line in enumerate(lines)],
    )


async def set_progress(conn: asyncpg.Connection, env_id: int, progress: dict) -> None:
    await conn.execute("UPDATE environments SET progress = $2 WHERE id = $1", env_id, json.dumps(progress))


async def finish_run(
    conn: asyncpg.Connection, run_id: int, state: RunState, exit_code: int | None = None, error: str | None = None
) -> None:
    await conn.execute(
        """UPDATE runs SET state = $2, exit_code = $3, error = $4, finished_at = now()
           WHERE id = $1 AND state = 'running'""",
        run_id,
        str(state),
        exit_code,
        error,
    )


_RELEASE = "lease_owner = NULL, lease_until = NULL, progress = NULL, updated_at = now()"


async def mark_active(conn: asyncpg.Connection, env: Environment, owner: str, url: str | None, outputs: dict) -> bool:
    return await _finish(
        conn,
        f"""UPDATE environments SET status = 'active', deployed_sha = $3, preview_url = $4,
        outputs = $5, observed_generation = greatest(observed_generation, $6), attempts = 0, last_error = NULL,
        {_RELEASE} WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        env.desired_sha,
        url,
        json.dumps(outputs),
        env.generation,
    )


async def mark_destroyed(conn: asyncpg.Connection, env: Environment, owner: str) -> bool:
    return await _finish(
        conn,
        f"""UPDATE environments SET status = 'destroyed', provisioned = false,
        deployed_sha = NULL, preview_url = NULL, outputs = '{{}}',
        observed_generation = greatest(observed_generation, $3), attempts = 0, last_error = NULL,
        {_RELEASE} WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        env.generation,
    )


async def mark_failed(
    conn: asyncpg.Connection, env: Environment, owner: str, error: str, retry_in: float | None
) -> bool:
    """Failed; retried after `retry_in` seconds, or parked (None) until the desired state changes."""
    return await _finish(
        conn,
        f"""UPDATE environments SET status = 'failed', last_error = $3,
        attempts = attempts + 1,
        next_attempt_at = CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $4) END,
        {_RELEASE} WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
        error,
        retry_in,
    )


async def release(conn: asyncpg.Connection, env: Environment, owner: str) -> bool:
    """Give the environment back unconverged (superseded or shutting down): pending, due now."""
    return await _finish(
        conn,
        f"""UPDATE environments SET status = 'pending',
        next_attempt_at = greatest(next_attempt_at, now()),
        {_RELEASE} WHERE id = $1 AND lease_owner = $2""",
        env.id,
        owner,
    )


async def _finish(conn: asyncpg.Connection, sql: str, *args: Any) -> bool:
    status = await conn.execute(sql, *args)
    if status == "UPDATE 1":
        await notify(conn, args[0])
        return True
    return False


# --- reads -----------------------------------------------------------------------------------------------------------


async def get_environment(conn: asyncpg.Connection, env_id: int) -> Environment | None:
    row = await conn.fetchrow("SELECT * FROM environments WHERE id = $1", env_id)
    return Environment.from_record(row) if row else None


async def find_environment(conn: asyncpg.Connection, repository: str, pr_number: int) -> Environment | None:
    row = await conn.fetchrow(
        "SELECT * FROM environments WHERE lower(repository) = lower($1) AND pr_number = $2 ORDER BY id DESC LIMIT 1",
        repository,
        pr_number,
    )
    return Environment.from_record(row) if row else None


async def list_environments(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    repository: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[Environment]:
    rows = await conn.fetch(
        """SELECT * FROM environments
           WHERE id > $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR repository = $3)
           ORDER BY id LIMIT $4""",
        after,
        status,
        repository,
        limit,
    )
    return [Environment.from_record(r) for r in rows]


async def list_runs(conn: asyncpg.Connection, env_id: int, limit: int = 50) -> list[dict]:
    rows = await conn.fetch(
        """SELECT id, action, sha, state, started_at, finished_at, exit_code, error FROM runs
           WHERE environment_id = $1 ORDER BY id DESC LIMIT $2""",
        env_id,
        limit,
    )
    return [dict(r) for r in rows]


async def run_log(conn: asyncpg.Connection, run_id: int, after_seq: int = -1, limit: int = 10000) -> list[dict]:
    rows = await conn.fetch(
        "SELECT seq, at, line FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        run_id,
        after_seq,
        limit,
    )
    return [dict(r) for r in rows]


async def prune_deliveries(conn: asyncpg.Connection, older_than_days: float = 7) -> int:
    status = await conn.execute(
        "DELETE FROM deliveries WHERE received_at < now() - make_interval(days => $1::int)", int(older_than_days)
    )
    return int(status.split()[-1])


# --- reads for the dashboard and metrics -----------------------------------------------------------------------------

LIST_COLUMNS = (
    "id",
    "name",
    "repository",
    "pr_number",
    "title",
    "author",
    "pr_url",
    "status",
    "desired",
    "desired_sha",
    "deployed_sha",
    "preview_url",
    "created_at",
    "expires_at",
)


async def list_environments_newest(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    repository: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[asyncpg.Record]:
    """The columns a list shows (`LIST_COLUMNS`), newest first; keyset pagination: the next page is `before` the
    last id shown. Records, not `Environment`s: a page of 1,000 costs no JSON decoding."""
    return await conn.fetch(
        f"""SELECT {", ".join(LIST_COLUMNS)} FROM environments
           WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR status = $2)
             AND ($3::text IS NULL OR repository = $3)
           ORDER BY id DESC LIMIT $4""",
        before,
        status,
        repository,
        limit,
    )


async def count_by_repository_and_status(conn: asyncpg.Connection) -> list[tuple[str, str, int]]:
    rows = await conn.fetch("SELECT repository, status, count(*) AS n FROM environments GROUP BY 1, 2 ORDER BY 1, 2")
    return [(r["repository"], r["status"], r["n"]) for r in rows]


async def count_by_status(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """status → (environments, of which unconverged), in one GROUP BY."""
    rows = await conn.fetch(
        """SELECT status, count(*) AS n, count(*) FILTER (WHERE generation > observed_generation) AS unconverged
           FROM environments GROUP BY status"""
    )
    return {r["status"]: (r["n"], r["unconverged"]) for r in rows}


async def get_run(conn: asyncpg.Connection, run_id: int) -> dict | None:
    row = await conn.fetchrow(
        """SELECT id, environment_id, action, sha, state, started_at, finished_at, exit_code, error FROM runs
           WHERE id = $1""",
        run_id,
    )
    return dict(row) if row else None


async def run_log_tail(conn: asyncpg.Connection, run_id: int, limit: int) -> tuple[list[dict], int]:
    """The last `limit` lines of a run in order, and how many lines there are in all."""
    rows = await conn.fetch(
        """SELECT seq, at, line, count(*) OVER () AS total FROM
             (SELECT seq, at, line FROM run_logs WHERE run_id = $1) l ORDER BY seq DESC LIMIT $2""",
        run_id,
        limit,
    )
    total = rows[0]["total"] if rows else 0
    return [{"seq": r["seq"], "at": r["at"], "line": r["line"]} for r in reversed(rows)], total
