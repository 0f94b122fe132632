"""The preview gateway's SQL: find a preview by its host's environment name, and record when previews were last
requested (one batched UPDATE for many requests)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import asyncpg

from ghapp.core.model import Environment
from ghapp.db.rows import maybe_environment


async def environment_by_name(conn: asyncpg.Connection, name: str) -> Environment | None:
    row = await conn.fetchrow("SELECT * FROM environments WHERE name = $1 ORDER BY id DESC LIMIT 1", name)
    return maybe_environment(row)


async def record_requests(conn: asyncpg.Connection, last_request: Mapping[int, dt.datetime]) -> None:
    """Move each environment's `last_request_at` forward to the time given (never back: another replica may have
    recorded a later request). Migration 013 keeps this from counting as a change to publish."""
    if not last_request:
        return
    await conn.execute(
        """UPDATE environments AS e SET last_request_at = greatest(e.last_request_at, r.at)
           FROM unnest($1::bigint[], $2::timestamptz[]) AS r(id, at)
           WHERE e.id = r.id AND e.last_request_at IS DISTINCT FROM greatest(e.last_request_at, r.at)""",
        list(last_request),
        list(last_request.values()),
    )
