"""Terraform's pg backend gets a role of its own, limited to the state schema, never the app's database URL.

At start, after migrations and under the migration lock (replicas starting together do it once), the app makes a
LOGIN role named after the database (role names are cluster-wide) with a random password, kept in the `state_role`
table that only the app's role can read, so every replica hands Terraform the same one. The role gets USAGE on the
schema `terraform_remote_state` (migration 006 created its table, sequence and index) and SELECT/INSERT/UPDATE/
DELETE on `states`: nothing else, and no CREATE anywhere, so Terraform runs with PG_SKIP_*_CREATION.

The password is set as a SCRAM verifier computed here, so the clear text never reaches the server's log.

Where Terraform reaches the server: for an external `DATABASE_URL`, the same host, port and options as the app's
URL; for the embedded server, its loopback TCP port, whose pg_hba.conf admits only this role, with a password
(ghapp/db/embedded.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

SCHEMA = "terraform_remote_state"  # Terraform's default schema_name: modules need no backend settings
ROLE_PREFIX = "ghapp_tfstate_"
_SCRAM_ITERATIONS = 4096
# libpq URL parameters that name who connects: never carried over from the app's URL.
_IDENTITY_PARAMS = {"user", "password", "passfile", "sslkey", "sslcert", "sslpassword", "service"}


@dataclasses.dataclass(frozen=True)
class StateRole:
    name: str
    password: str = dataclasses.field(repr=False)
    url: str | None = dataclasses.field(default=None, repr=False)  # PG_CONN_STR for Terraform


def role_name(database: str) -> str:
    """`ghapp_tfstate_<database>`: one role per database, since roles are shared by the whole server."""
    plain = re.sub(r"[^a-z0-9_]", "_", database.lower())
    name = ROLE_PREFIX + plain
    if len(name) > 63 or plain != database:
        name = f"{ROLE_PREFIX}{plain[:30]}_{hashlib.sha256(database.encode()).hexdigest()[:12]}"
    return name


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` PostgreSQL stores (RFC 5802/7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


async def ensure(pool: asyncpg.Pool, lock_id: int) -> StateRole | None:
    """Create (or bring back in line) the state role and its grants; None, with a warning, when the app's role may
    not manage roles: then no PG_CONN_STR is exported at all."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id)
        database = await conn.fetchval("SELECT current_database()")
        name = role_name(database)
        password = await conn.fetchval("SELECT password FROM state_role WHERE name = $1", name)
        if password is None:
            password = secrets.token_urlsafe(32)
            await conn.execute("INSERT INTO state_role (name, password) VALUES ($1, $2)", name, password)
        role = quote_ident(name)
        attributes = (
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS "
            f"PASSWORD '{scram_verifier(password)}'"
        )
        exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name)
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the password row in place
                await conn.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {role} WITH {attributes}")
        except (asyncpg.exceptions.InsufficientPrivilegeError, asyncpg.exceptions.ObjectInUseError) as e:
            log.warning(
                "cannot %s the Terraform state role %s (%s): Terraform gets no PG_CONN_STR. A module with "
                'backend "pg" needs one: give the app\'s database role CREATEROLE, or set PG_CONN_STR to a '
                "database of its own and list it in GHAPP_TERRAFORM_ENV (docs/operations.md).",
                "update" if exists else "create",
                name,
                e,
            )
            return None
        await conn.execute(f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {role}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.states TO {role}")
        await conn.execute(f"GRANT USAGE ON SEQUENCE {SCHEMA}.states_id_seq TO {role}")
        if await conn.fetchval("SELECT has_schema_privilege($1, 'public', 'CREATE')", name):
            log.warning(
                "every role may CREATE in the schema public of %s (PostgreSQL before 15): the Terraform state role "
                "too. Run `REVOKE CREATE ON SCHEMA public FROM PUBLIC` as the schema's owner.",
                database,
            )
        log.info("Terraform state role %s ready", name)
        return StateRole(name, password)


def connection_string(app_url: str, role: StateRole, tcp_host: str | None = None) -> str:
    """The app's URL with the state role as its user (the app's password and identity parameters dropped). With
    `tcp_host`, over TCP to that host on the URL's port instead of a unix socket (the embedded server)."""
    parts = urlsplit(app_url)
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _IDENTITY_PARAMS]
    host = parts.hostname or ""
    port = parts.port
    if tcp_host is not None:
        port = int(next((v for k, v in params if k == "port"), port or 5432))
        params = [(k, v) for k, v in params if k not in ("host", "hostaddr", "port", "sslmode")]
        params.append(("sslmode", "disable"))
        host = tcp_host
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(role.name, safe='')}:{quote(role.password, safe='')}@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(params), ""))


async def backend_url(pool: asyncpg.Pool, app_url: str, lock_id: int, tcp_host: str | None = None) -> StateRole | None:
    """`ensure` the role; the role with `url` set to the connection string Terraform gets, or None."""
    role = await ensure(pool, lock_id)
    return dataclasses.replace(role, url=connection_string(app_url, role, tcp_host)) if role else None
