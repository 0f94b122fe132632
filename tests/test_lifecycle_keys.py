"""Lifecycle keys of `.github/preview.yml` and the comment commands (issue 10, item 6): the configuration's `ttl`,
`/preview keep` (and `keep off`), the expiry reminder, and `max_previews` from the configuration. The whole app on
real PostgreSQL and Terraform; the configuration comes from a stub ConfigurationReader (reading the file is the
configuration step's work), GitHub is the strict fake."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest

from ghapp import db as ghapp_db
from ghapp.core import render
from ghapp.core.model import Environment
from ghapp.core.policy import expiry
from ghapp.core.repoconfig import ConfigOrigin, RepoConfig
from ghapp.db import desired
from ghapp.db.rows import to_environment
from ghapp.web import keys
from ghapp.workers.periodic import remind_expiring
from ghapp.workers.publisher import present, snapshot
from ghapp.workers.resolve import ConfigurationReader, Resolver
from tests.support import environment, fake_sha, wait_for
from tests.test_github_app import REPO, as_github_app, comment_on_pr, github  # noqa: F401 - the fixture
from tests.test_reconciler import converged, post

ORIGIN = ConfigOrigin("repository", "b10b5ha", "changes")


class Configured(ConfigurationReader):
    """Every pull request has this `.github/preview.yml`."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config

    async def read(self, env: Environment) -> tuple[RepoConfig, ConfigOrigin]:
        return self.config, ORIGIN


def configure(client, config: RepoConfig) -> None:
    """Give the app's reconciler a resolver that reads `config` (before any pull request arrives)."""
    client.app[keys.RECONCILER].resolver = Resolver(configuration=Configured(config))


async def opened(client, deliveries, number: int = 2) -> int:
    status, body = await post(
        client, deliveries, "pull_request", deliveries.pull_request("opened", number=number, sha=fake_sha(number))
    )
    assert status == 202, body
    return body["environment_id"]


async def view(db, env_id: int, settings) -> render.Presentation:
    async with db.acquire() as conn:
        env = to_environment(await conn.fetchrow("SELECT * FROM environments WHERE id = $1", env_id))
        return present(await snapshot(conn, env, settings), settings)


def lifetime(env: dict) -> float:
    return (env["expires_at"] - env["last_activity_at"]).total_seconds()


# --- ttl ---------------------------------------------------------------------------------------------------------------


async def test_the_configurations_ttl_sets_the_expiry_and_later_pushes_keep_it(start_app, deliveries, db, settings):
    client = await start_app(env_ttl=3600.0)
    configure(client, RepoConfig(ttl=1800.0))
    env_id = await opened(client, deliveries)
    env = await wait_for(lambda: converged(db, env_id, "active"), what="active")
    assert env["ttl"] == 1800.0
    assert env["expires_at"] == expiry(env["last_activity_at"], 1800.0, keep=False)  # SQL and policy agree

    data = deliveries.pull_request("synchronize", number=2, sha=fake_sha("push"))
    assert (await post(client, deliveries, "pull_request", data))[0] == 202
    assert lifetime(await environment(db, env_id)) == 1800.0, "a push renews the expiry with the repository's ttl"
    await wait_for(lambda: converged(db, env_id, "active"), what="the push deployed")

    comment = (await view(db, env_id, settings.replace(env_ttl=3600.0))).comment
    assert "(30 min after the last push)" in comment


async def test_a_preview_expires_after_its_repositorys_ttl(start_app, deliveries, db):
    """The operator says 20 s, the repository 2 s: the reaper destroys it on the repository's ttl."""
    client = await start_app(env_ttl=20.0)
    configure(client, RepoConfig(ttl=2.0))
    env_id = await opened(client, deliveries)
    env = await wait_for(lambda: converged(db, env_id, "destroyed"), timeout=30, what="expired")
    assert env["expired_at"] is not None and env["desired"] == "absent"
    assert (env["expired_at"] - env["last_activity_at"]).total_seconds() < 20, "expired on the operator's ttl"


# --- /preview keep -------------------------------------------------------------------------------------------------


@pytest.fixture
def start_online(start_app, github):
    return as_github_app(start_app, github)


async def published(db, env_id: int):
    env = await environment(db, env_id)
    done = env and env["observed_generation"] == env["generation"] and env["published_version"] == env["version"]
    return env if done else None


def sticky(github) -> str:
    return next(c["body"] for c in github.comments(REPO, 2) if c["body"].startswith("<!-- ghapp:preview -->"))


async def command(client, deliveries, github, body: str, user: str = "Codertocat") -> None:
    data = comment_on_pr(deliveries, body, user=user, github=github)
    status, reply = await post(client, deliveries, "issue_comment", data)
    assert status == 202, reply


async def test_keep_stops_the_expiry_while_the_pr_is_open_and_keep_off_undoes_it(start_online, deliveries, db, github):
    """The PR's author, who may only read the repository, keeps the preview: no expiry (comment, check run, API),
    a push does not bring one back; `keep off` starts the ttl again from now; closing ends the keep."""
    github.set_permission(REPO, "Codertocat", "read")
    client = await start_online(env_ttl=3600.0)
    env_id = await opened(client, deliveries)
    await wait_for(lambda: published(db, env_id), what="active and published")

    await command(client, deliveries, github, "/preview keep")
    env = await wait_for(lambda: _kept_and_published(db, env_id), what="kept")
    assert env["expires_at"] is None and env["expiry_warned_at"] is None
    assert "| Expires | kept: no expiry while the PR is open" in sticky(github)
    (run,) = [r for r in github.check_runs(REPO) if r["head_sha"] == fake_sha(2)]
    assert "Kept: no expiry while the PR is open." in run["output"]["summary"]
    api = await (await client.get(f"/api/environments/{env_id}")).json()
    assert (api["keep"], api["expires_at"]) == (True, None)
    for page in (f"/environments/{env_id}", "/"):
        assert "kept: no expiry while the PR is open" in await (await client.get(page)).text(), page
    async with db.acquire() as conn:
        assert env_id not in await desired.expire(conn), "a kept preview never expires"

    data = deliveries.pull_request("synchronize", number=2, sha=fake_sha("push"))
    assert (await post(client, deliveries, "pull_request", data))[0] == 202
    env = await environment(db, env_id)
    assert env["keep"] and env["expires_at"] is None, "kept while the PR is open, pushes or not"
    await wait_for(lambda: published(db, env_id), what="the push deployed")

    before = (await environment(db, env_id))["last_activity_at"]
    await command(client, deliveries, github, "/preview keep off")
    env = await wait_for(lambda: _expiring_and_published(db, env_id), what="expiring again")
    assert lifetime(env) == 3600.0 and env["last_activity_at"] > before, "the ttl counts from the command"
    assert "| Expires | " in sticky(github) and "kept:" not in sticky(github)

    await command(client, deliveries, github, "/preview keep")
    await wait_for(lambda: _kept_and_published(db, env_id), what="kept again")
    data = deliveries.pull_request("closed", number=2, sha=fake_sha("push"))
    assert (await post(client, deliveries, "pull_request", data))[0] == 202
    env = await wait_for(lambda: converged(db, env_id, "destroyed"), what="destroyed on close")
    assert not env["keep"], "the keep ends with the pull request"


async def _kept_and_published(db, env_id):
    env = await published(db, env_id)
    return env if env and env["keep"] else None


async def _expiring_and_published(db, env_id):
    env = await published(db, env_id)
    return env if env and not env["keep"] and env["expires_at"] is not None else None


async def test_keep_from_someone_who_may_not_is_refused(start_online, deliveries, db, github):
    github.set_permission(REPO, "passerby", "read")
    client = await start_online(env_ttl=3600.0)
    env_id = await opened(client, deliveries)
    await wait_for(lambda: published(db, env_id), what="active and published")
    await command(client, deliveries, github, "/preview keep", user="passerby")
    reply = await wait_for(lambda: _bot_reply(github, "Sorry @passerby"), what="a polite refusal")
    assert "`/preview keep` needs write access" in reply and "being its author" in reply
    env = await environment(db, env_id)
    assert not env["keep"] and lifetime(env) == 3600.0


async def _bot_reply(github, start: str) -> str | None:
    return next((c["body"] for c in github.comments(REPO, 2) if c["body"].startswith(start)), None)


async def test_keep_before_there_is_a_preview_is_answered_and_changes_nothing(start_online, deliveries, db, github):
    client = await start_online()
    await command(client, deliveries, github, "/preview keep")
    reply = await wait_for(lambda: _bot_reply(github, "This pull request has no preview"), what="the answer")
    assert "nothing to keep" in reply
    assert await db.fetchval("SELECT count(*) FROM environments") == 0


async def test_help_lists_keep(start_online, deliveries, db, github):
    client = await start_online()
    await command(client, deliveries, github, "/preview help")
    reply = await wait_for(lambda: _bot_reply(github, "Preview environment commands"), what="the help")
    assert "`/preview keep`" in reply and "`/preview keep off`" in reply


# --- the expiry reminder -------------------------------------------------------------------------------------------


async def test_the_reminder_is_shown_once_when_the_expiry_is_near(start_online, deliveries, db, github):
    """ttl 12 s, reminder 8 s before: the sticky comment says "expires in ..." once, not before the time and not
    again on later passes of the reaper (one a second); then the preview expires."""
    client = await start_online(env_ttl=12.0, expiry_warning=8.0)
    env_id = await opened(client, deliveries)
    reminded = await wait_for(lambda: _reminded_and_published(db, env_id), what="the reminder shown")
    assert (reminded["expires_at"] - reminded["expiry_warned_at"]).total_seconds() <= 8.0, "reminded too early"
    assert "⏰ This preview expires in " in sticky(github) and "`/preview keep` to keep it." in sticky(github)

    await wait_for(lambda: _published_status(db, env_id, "destroyed"), timeout=40, what="expired")
    bodies = [c.json["body"] for c in github.calls("issues/create-comment") + github.calls("issues/update-comment")]
    assert len([body for body in bodies if "⏰" in body]) == 1, "the reminder is one edit of the sticky comment"
    assert "The environment expired after 12 s without a push" in bodies[-1]


async def _reminded_and_published(db, env_id):
    env = await published(db, env_id)
    return env if env and env["expiry_warned_at"] is not None else None


async def _published_status(db, env_id, status):
    env = await published(db, env_id)
    return env if env and env["status"] == status else None


@pytest.fixture
async def migrated(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    await ghapp_db.migrate(pool)
    yield pool
    await pool.close()


async def _present(pool, pr: int, expires_in: float | None, installation: int = 1) -> int:
    return await pool.fetchval(
        """INSERT INTO environments (repo_id, repository, pr_number, author, installation_id, desired, desired_sha,
                                     keep, expires_at)
           VALUES (1, 'o/r', $1, 'a', $2, 'present', 'abc', $3::float8 IS NULL,
                   now() + make_interval(secs => $3::float8))
           RETURNING id""",
        pr,
        installation,
        expires_in,
    )


async def test_the_reminder_marks_what_expires_within_the_warning_once_and_spends_only_a_spare_budget(
    migrated, settings
):
    warning = dataclasses.replace(settings, expiry_warning=7200.0, rate_reserve=1000)
    later, soon, kept, other = [
        await _present(migrated, pr, expires_in, installation)
        for pr, expires_in, installation in ((1, 3 * 3600, 1), (2, 3600, 1), (3, None, 1), (4, 600, 2))
    ]
    budget = {1: 5000, 2: 10}  # installation 2 is low on requests: its reminder waits
    async with migrated.acquire() as conn:
        assert await remind_expiring(conn, warning, budget.get) == [soon]
        assert await remind_expiring(conn, warning, budget.get) == [], "once"
        budget[2] = 5000
        assert await remind_expiring(conn, warning, budget.get) == [other]
        assert await remind_expiring(conn, dataclasses.replace(warning, expiry_warning=0.0)) == []
        version = await conn.fetchval("SELECT version FROM environments WHERE id = $1", soon)
        await desired.deploy_head(conn, soon, "def", approve=False, ttl_seconds=3 * 3600)
        env = await conn.fetchrow("SELECT * FROM environments WHERE id = $1", soon)
    assert env["expiry_warned_at"] is None and env["version"] > version, "a new expiry, a new reminder later"
    rows = await migrated.fetch("SELECT id, expiry_warned_at FROM environments WHERE id = ANY($1)", [later, kept])
    assert all(r["expiry_warned_at"] is None for r in rows)


# --- max_previews from the configuration ----------------------------------------------------------------------------


async def test_max_previews_from_the_configuration_queues_the_second_preview_until_the_first_closes(
    start_app, deliveries, db, settings
):
    client = await start_app()
    configure(client, RepoConfig(max_previews=1))
    first = await opened(client, deliveries, 1)
    await wait_for(lambda: converged(db, first, "active"), what="the first preview active")
    second = await opened(client, deliveries, 2)

    waiting = await wait_for(lambda: _waiting(db, second), what="the second preview waiting in line")
    assert waiting["max_previews"] == 1 and not waiting["provisioned"]
    assert await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = $1", second) == 0
    shown = await view(db, second, settings)
    text = "waiting: 1 previews of this repository are live (max_previews = 1); position 1"
    assert shown.check_run.status == "queued" and text in shown.check_run.summary
    assert text.capitalize() in shown.comment

    data = deliveries.pull_request("closed", number=1, sha=fake_sha(1))
    assert (await post(client, deliveries, "pull_request", data))[0] == 202
    env = await wait_for(lambda: converged(db, second, "active"), what="the second preview deployed")
    assert env["max_previews"] == 1


async def test_a_repositorys_max_previews_cannot_lift_the_operators_cap(start_app, deliveries, db, settings):
    """Attacked on 2026-12-01: a pull request's file saying `max_previews: 50` replaced the operator's
    GHAPP_MAX_PREVIEWS once its preview had been deployed: closed and reopened beyond the operator's cap, it
    deployed again. The operator's cap is a ceiling."""
    client = await start_app(max_previews=1)
    configure(client, RepoConfig(max_previews=50))
    first = await opened(client, deliveries, 1)
    await wait_for(lambda: converged(db, first, "active"), what="the first preview active")
    closed = deliveries.pull_request("closed", number=1, sha=fake_sha(1))
    assert (await post(client, deliveries, "pull_request", closed))[0] == 202
    await wait_for(lambda: converged(db, first, "destroyed"), what="the first preview destroyed")
    second = await opened(client, deliveries, 2)
    await wait_for(lambda: converged(db, second, "active"), what="the second preview active")
    runs_before = await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = $1", first)

    reopened = deliveries.pull_request("reopened", number=1, sha=fake_sha(1))
    assert (await post(client, deliveries, "pull_request", reopened))[0] == 202
    operator = settings.replace(max_previews=1)

    async def held_in_line():
        shown = await view(db, first, operator)
        return "(max_previews = 1); position 1" in shown.check_run.summary

    await wait_for(held_in_line, what="the reopened preview waiting under the operator's cap")
    env = await environment(db, first)
    assert env["status"] in ("pending", "destroyed") and not env["provisioned"]
    assert await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = $1", first) == runs_before


async def _waiting(db, env_id):
    """Requeued with its repository's cap and held in line: pending, unconverged, no lease."""
    env = await environment(db, env_id)
    held = env["max_previews"] is not None and env["lease_owner"] is None and env["status"] == "pending"
    return env if held else None
