"""Reads for the API, the dashboard, the CLI and metrics."""

from __future__ import annotations

import asyncpg

from ghapp.core.model import Environment
from ghapp.db.rows import maybe_environment, to_environment

# The statements of the API, the dashboard, /metrics and the resync, named so that tests/test_query_plans.py can
# check their plans on 10,000 environments.

# The API's page: oldest first, keyset pagination (`after` the last id shown).
_LIST = """
SELECT * FROM environments
WHERE id > $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR repository = $3)
ORDER BY id LIMIT $4"""

# The dashboard's page: the columns a list shows, newest first (`before` the last id shown).
_LIST_NEWEST = """
SELECT id, name, repository, pr_number, title, author, pr_url, status, desired, desired_sha, deployed_sha,
       preview_url, created_at, expires_at, keep, desired_sleeping
FROM environments
WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR repository = $3)
ORDER BY id DESC LIMIT $4"""

_COUNT_BY_REPOSITORY_AND_STATUS = """
SELECT repository, status, count(*) AS n FROM environments GROUP BY 1, 2 ORDER BY 1, 2"""

_COUNT_BY_STATUS = """
SELECT status, count(*) AS n, count(*) FILTER (WHERE generation > observed_generation) AS unconverged
FROM environments GROUP BY status"""

_LIVE_REPOSITORIES = """
SELECT DISTINCT installation_id, repo_id, repository FROM environments
WHERE desired = 'present' AND installation_id IS NOT NULL AND NOT github_gone"""

_LIVE_ENVIRONMENTS = """
SELECT id, pr_number, desired_sha, head_sha, base_ref, draft, labels FROM environments
WHERE repo_id = $1 AND desired = 'present'"""


async def get_environment(conn: asyncpg.Connection, env_id: int) -> Environment | None:
    row = await conn.fetchrow("SELECT * FROM environments WHERE id = $1", env_id)
    return maybe_environment(row)


async def find_environment(conn: asyncpg.Connection, repository: str, pr_number: int) -> Environment | None:
    row = await conn.fetchrow(
        "SELECT * FROM environments WHERE lower(repository) = lower($1) AND pr_number = $2 ORDER BY id DESC LIMIT 1",
        repository,
        pr_number,
    )
    return maybe_environment(row)


async def list_environments(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    repository: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[Environment]:
    found = await conn.fetch(
        _LIST,
        after,
        status,
        repository,
        limit,
    )
    return [to_environment(r) for r in found]


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


async def list_environments_newest(
    conn: asyncpg.Connection,
    *,
    status: str | None = None,
    repository: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[asyncpg.Record]:
    """The columns a list shows, newest first; keyset pagination: the next page is `before` the last id shown.
    Records, not `Environment`s: a page of 1,000 costs no JSON decoding."""
    return await conn.fetch(
        _LIST_NEWEST,
        before,
        status,
        repository,
        limit,
    )


async def count_by_repository_and_status(conn: asyncpg.Connection) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(_COUNT_BY_REPOSITORY_AND_STATUS)
    return [(r["repository"], r["status"], r["n"]) for r in rows]


async def count_by_status(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """status → (environments, of which unconverged), in one GROUP BY."""
    rows = await conn.fetch(_COUNT_BY_STATUS)
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


async def all_converged_and_gone(conn: asyncpg.Connection) -> bool:
    """Nothing provisioned and nothing left to do (the demo waits for this before it stops)."""
    return await conn.fetchval(
        "SELECT count(*) = 0 FROM environments WHERE provisioned OR generation > observed_generation"
    )


async def live_repositories(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(installation_id, repo_id, repository) of every repository with a live environment GitHub still knows."""
    return await conn.fetch(_LIVE_REPOSITORIES)


async def live_environments(conn: asyncpg.Connection, repo_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(_LIVE_ENVIRONMENTS, repo_id)


async def environment_of_check_run(conn: asyncpg.Connection, env_id: int, repo_id: int) -> asyncpg.Record | None:
    """(repository, pr_number) of the environment a check run names, if it is in that repository."""
    return await conn.fetchrow(
        "SELECT repository, pr_number FROM environments WHERE id = $1 AND repo_id = $2", env_id, repo_id
    )


async def known_head(conn: asyncpg.Connection, repo_id: int, pr_number: int) -> asyncpg.Record | None:
    """The head commit ghapp knows for a pull request, and GitHub's `updated_at` of the event that said so."""
    return await conn.fetchrow(
        "SELECT head_sha, pr_updated_at FROM environments WHERE repo_id = $1 AND pr_number = $2",
        repo_id,
        pr_number,
    )
