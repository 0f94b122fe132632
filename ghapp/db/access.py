"""SQL for preview access: sessions on preview hosts, the single-use tickets that hand a sign-in to a preview's
host, and automation tokens. Every secret is stored as its SHA-256 only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import asyncpg

from ghapp.core.model import Environment
from ghapp.db.rows import maybe_environment

# Every replica LISTENs here and drops what it cached about a person or a token when the database ends it; the
# payload is `user <id>` (all of a person's sessions), `user <id> <repo id>` (those for one repository's previews)
# or `tokens` (a token was revoked). NOTIFY is delivered at commit, so no replica hears of what did not happen.
CHANNEL = "ghapp_access"


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclasses.dataclass(frozen=True)
class Person:
    """A signed-in person on one preview host (from a session or a ticket)."""

    host: str
    repo_id: int
    user_id: int
    login: str
    path: str = "/"


async def environment_by_name(conn: asyncpg.Connection, name: str) -> Environment | None:
    row = await conn.fetchrow("SELECT * FROM environments WHERE name = $1 ORDER BY id DESC LIMIT 1", name)
    return maybe_environment(row)


async def create_ticket(conn: asyncpg.Connection, ticket: str, person: Person, ttl_seconds: float) -> None:
    await conn.execute("DELETE FROM access_tickets WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO access_tickets (id_hash, host, repo_id, user_id, login, path, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
        secret_hash(ticket),
        person.host,
        person.repo_id,
        person.user_id,
        person.login,
        person.path,
        float(ttl_seconds),
    )


async def redeem_ticket(conn: asyncpg.Connection, ticket: str, host: str) -> Person | None:
    """The ticket's person, once: the row is deleted whether or not it is still valid for `host`."""
    row = await conn.fetchrow(
        "DELETE FROM access_tickets WHERE id_hash = $1 RETURNING host, repo_id, user_id, login, path, "
        "expires_at > now() AS live",
        secret_hash(ticket),
    )
    if row is None or not row["live"] or row["host"] != host:
        return None
    return Person(row["host"], row["repo_id"], row["user_id"], row["login"], row["path"])


async def create_session(conn: asyncpg.Connection, session_id: str, person: Person, ttl_seconds: float) -> None:
    await conn.execute("DELETE FROM access_sessions WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO access_sessions (id_hash, host, repo_id, user_id, login, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        secret_hash(session_id),
        person.host,
        person.repo_id,
        person.user_id,
        person.login,
        float(ttl_seconds),
    )


async def find_session(conn: asyncpg.Connection, session_id: str, host: str) -> Person | None:
    """The live session named by the cookie, only on the host it was made for."""
    row = await conn.fetchrow(
        "SELECT host, repo_id, user_id, login FROM access_sessions "
        "WHERE id_hash = $1 AND host = $2 AND expires_at > now()",
        secret_hash(session_id),
        host,
    )
    return Person(row["host"], row["repo_id"], row["user_id"], row["login"]) if row else None


async def end_sessions(conn: asyncpg.Connection, user_id: int, repo_id: int | None = None) -> int:
    """Ends a person's sessions (and pending tickets): all of them, or those for one repository's previews; every
    replica is told (at commit) to stop trusting what it cached of them."""
    await conn.execute(
        "DELETE FROM access_tickets WHERE user_id = $1 AND ($2::bigint IS NULL OR repo_id = $2)", user_id, repo_id
    )
    status = await conn.execute(
        "DELETE FROM access_sessions WHERE user_id = $1 AND ($2::bigint IS NULL OR repo_id = $2)", user_id, repo_id
    )
    notice = f"user {user_id}" if repo_id is None else f"user {user_id} {repo_id}"
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, notice)
    return int(status.split()[-1])


@dataclasses.dataclass(frozen=True)
class AccessToken:
    id: int
    repository: str
    description: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


async def create_token(
    conn: asyncpg.Connection, token: str, repository: str, description: str, ttl_seconds: float | None
) -> AccessToken:
    row = await conn.fetchrow(
        "INSERT INTO access_tokens (token_hash, repository, description, expires_at) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4)) "
        "RETURNING id, repository, description, created_at, expires_at, revoked_at",
        secret_hash(token),
        repository,
        description,
        ttl_seconds,
    )
    return AccessToken(**dict(row))


async def token_repository(conn: asyncpg.Connection, token: str) -> str | None:
    """The repository a live (not revoked, not expired) token opens."""
    return await conn.fetchval(
        "SELECT repository FROM access_tokens WHERE token_hash = $1 AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now())",
        secret_hash(token),
    )


async def list_tokens(conn: asyncpg.Connection, repository: str | None = None) -> list[AccessToken]:
    rows = await conn.fetch(
        "SELECT id, repository, description, created_at, expires_at, revoked_at FROM access_tokens "
        "WHERE $1::text IS NULL OR lower(repository) = lower($1) ORDER BY id",
        repository,
    )
    return [AccessToken(**dict(r)) for r in rows]


async def revoke_token(conn: asyncpg.Connection, token_id: int) -> AccessToken | None:
    """Revokes a token; every replica is told (at commit) to forget the tokens it cached."""
    row = await conn.fetchrow(
        "UPDATE access_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 "
        "RETURNING id, repository, description, created_at, expires_at, revoked_at, pg_notify($2, 'tokens')",
        token_id,
        CHANNEL,
    )
    return AccessToken(**{k: v for k, v in row.items() if k != "pg_notify"}) if row else None
