"""Fair run slots and the cap on live previews per repository (issue 9, finding 7): the whole app in-process on the
scripted module, whose applies block until the test releases them one by one; and the claim's order on rows
written directly."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from ghapp import db as ghapp_db
from ghapp.core import render
from ghapp.core.policy import claim_key
from ghapp.db import runs as run_sql
from ghapp.db.rows import to_environment
from ghapp.workers.publisher import present, snapshot
from tests.support import fake_sha, wait_for
from tests.test_reconciler import converged, post

REPO_B = {"repo_id": 777001, "repository": "other-org/other-repo"}


@pytest.fixture
def release_dir():
    """Where the test releases blocked applies (`<dir>/<environment id>`); readable by the run user."""
    path = Path(tempfile.mkdtemp(prefix="ghapp-release-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _running_envs(db) -> set[int]:
    rows = await db.fetch("SELECT environment_id FROM runs WHERE state = 'running'")
    return {r["environment_id"] for r in rows}


async def _started(db) -> list[int]:
    """Environments in the order their first run started."""
    rows = await db.fetch("SELECT environment_id FROM runs ORDER BY id")
    return list(dict.fromkeys(r["environment_id"] for r in rows))


async def _open(client, deliveries, number: int, **repo) -> int:
    data = deliveries.pull_request("opened", number=number, sha=fake_sha(number, repo.get("repo_id")), **repo)
    status, body = await post(client, deliveries, "pull_request", data)
    assert status == 202
    return body["environment_id"]


async def test_a_repository_with_slow_previews_does_not_hold_every_slot(start_app, deliveries, db, release_dir):
    """Two slots, four slow PRs of repository A opened first, then one of B: the first slot that frees goes to B,
    while A's other PRs wait (before: the oldest due, A's third PR, took it and B waited for all of A)."""
    client = await start_app(max_parallel_runs=2, terraform_env={"TF_VAR_release_dir": str(release_dir)})
    a = [await _open(client, deliveries, n) for n in (11, 12, 13, 14)]
    first_two = await wait_for(lambda: _two_running(db), what="two of A's applies running")
    b = await _open(client, deliveries, 21, **REPO_B)

    (release_dir / str(min(first_two))).touch()
    third = await wait_for(lambda: _nth_started(db, 3), what="a third run to start")
    assert third == b, f"A's PR {third} took the free slot before B's {b}"
    assert set(a) - first_two - await _running_envs(db) == set(a) - first_two, "A's waiting PRs did not wait"

    for env_id in [*a, b]:
        (release_dir / str(env_id)).touch()
    for env_id in [*a, b]:
        await wait_for(lambda env_id=env_id: converged(db, env_id, "active"), timeout=60, what=f"{env_id} active")


async def _two_running(db):
    running = await _running_envs(db)
    return running if len(running) == 2 else None


async def _nth_started(db, n: int):
    started = await _started(db)
    return started[n - 1] if len(started) >= n else None


async def test_new_previews_beyond_the_cap_wait_in_order_and_deploy_when_one_is_destroyed(
    start_app, deliveries, db, settings
):
    """GHAPP_MAX_PREVIEWS=2: the third and fourth PRs wait (pending, no run) with their place shown on the PR;
    closing one live PR deploys the oldest waiting one by itself. Another repository is not held back."""
    settings = settings.replace(max_previews=2)
    client = await start_app(max_previews=2)
    first, second = [await _open(client, deliveries, n) for n in (1, 2)]
    for env_id in (first, second):
        await wait_for(lambda env_id=env_id: converged(db, env_id, "active"), what=f"{env_id} active")
    third, fourth = [await _open(client, deliveries, n) for n in (3, 4)]
    other = await _open(client, deliveries, 5, **REPO_B)
    await wait_for(lambda: converged(db, other, "active"), what="the other repository's preview active")

    for env_id, position in ((third, 1), (fourth, 2)):
        env = await db.fetchrow("SELECT * FROM environments WHERE id = $1", env_id)
        assert env["status"] == "pending" and not env["provisioned"], dict(env)
        view = await _view(db, env_id, settings)
        text = f"waiting: 2 previews of this repository are live (max_previews = 2); position {position}"
        assert view.check_run.status == "queued" and text in view.check_run.summary
        assert text.capitalize() in view.comment
    assert await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = ANY($1::bigint[])", [third, fourth]) == 0

    data = deliveries.pull_request("closed", number=1, sha=fake_sha(1, None))
    assert (await post(client, deliveries, "pull_request", data))[0] == 202
    await wait_for(lambda: converged(db, third, "active"), what="the oldest waiting preview active")
    assert (await db.fetchrow("SELECT status FROM environments WHERE id = $1", fourth))["status"] == "pending"
    view = await _view(db, fourth, settings)
    assert "position 1" in view.check_run.summary
    assert await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = $1", fourth) == 0


async def _view(db, env_id: int, settings) -> render.Presentation:
    async with db.acquire() as conn:
        env = to_environment(await conn.fetchrow("SELECT * FROM environments WHERE id = $1", env_id))
        return present(await snapshot(conn, env, settings), settings)


# --- the claim's order, on rows written directly -------------------------------------------------------------------


@pytest.fixture
async def migrated(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    await ghapp_db.migrate(pool)
    yield pool
    await pool.close()


async def _env(pool, repo_id: int, pr: int, author: str, *, leased: bool = False, absent: bool = False) -> int:
    return await pool.fetchval(
        """INSERT INTO environments (repo_id, repository, pr_number, author, desired, desired_sha, provisioned,
                                     generation, observed_generation, lease_owner, lease_until, next_attempt_at)
           VALUES ($1, 'o/r', $2, $3, $5, 'abc', $5 = 'absent' OR $4, 2, 1,
                   CASE WHEN $4 THEN 'other-replica' END, CASE WHEN $4 THEN now() + interval '1 hour' END,
                   now() - make_interval(secs => 1000 - $2))
           RETURNING id""",
        repo_id,
        pr,
        author,
        leased,
        "absent" if absent else "present",
    )


async def test_claim_prefers_destroys_then_the_least_busy_repository_then_author(migrated):
    """Runs in flight (leases of any replica): repository 1 has two, repository 2 one (by alice), repository 3
    one (by bob). Due, oldest first: r1 (alice), r2 (carol), r3 (alice), r3 (carol), then a destroy in r1."""
    for repo, pr, author in ((1, 1, "alice"), (1, 2, "alice"), (2, 3, "alice"), (3, 4, "bob")):
        await _env(migrated, repo, pr, author, leased=True)
    r1 = await _env(migrated, 1, 10, "alice")
    r2 = await _env(migrated, 2, 11, "carol")
    r3_alice = await _env(migrated, 3, 12, "alice")
    r3_carol = await _env(migrated, 3, 13, "carol")
    destroy = await _env(migrated, 1, 14, "alice", absent=True)

    order = []
    async with migrated.acquire() as conn:
        while (env := await run_sql.claim(conn, "me", 60)) is not None:
            order.append(env.id)
    # The destroy first; then the rest as the pure rule orders them: r1, the oldest, last (its repository is busiest).
    assert order[0] == destroy
    assert order[1:] == _by_claim_key(
        {r1: (1, "alice", 10), r2: (2, "carol", 11), r3_alice: (3, "alice", 12), r3_carol: (3, "carol", 13)},
        {1: 3, 2: 1, 3: 1},
        {"alice": 4, "bob": 1},
    )
    assert order[1:] == [r2, r3_carol, r3_alice, r1], order


def _by_claim_key(candidates: dict, repo_load: dict, author_load: dict) -> list[int]:
    """Claim one at a time by policy.claim_key, counting each claim as a run in flight (as the SQL does)."""
    repo_load, author_load, left, order = dict(repo_load), dict(author_load), dict(candidates), []
    while left:
        env_id = min(
            left,
            key=lambda i: claim_key(
                False, repo_load.get(left[i][0], 0), author_load.get(left[i][1], 0), -1000 + left[i][2], i
            ),
        )
        repo, author, _ = left.pop(env_id)
        repo_load[repo] = repo_load.get(repo, 0) + 1
        author_load[author] = author_load.get(author, 0) + 1
        order.append(env_id)
    return order


async def test_touching_the_line_does_not_wait_for_a_preview_another_transaction_holds(migrated):
    """Two new previews of one repository starting at once each held its own row and waited for the other's in
    touch_queue: a deadlock. A waiting preview locked elsewhere is now skipped (its own transaction gives it a new
    version); the others get theirs."""
    waiting = [await _env(migrated, 5, pr, "a") for pr in range(1, 5)]
    before = dict(await migrated.fetch("SELECT id, version FROM environments"))
    async with migrated.acquire() as starting, starting.transaction():
        await starting.execute("UPDATE environments SET status = 'creating' WHERE id = $1", waiting[0])
        async with migrated.acquire() as conn, conn.transaction():
            await asyncio.wait_for(run_sql.touch_queue(conn, 5), 10)
    after = dict(await migrated.fetch("SELECT id, version FROM environments"))
    assert all(after[i] > before[i] for i in waiting)
