"""The statements the app runs again and again (the reconciler's wake-up and claim, every periodic job, the publisher,
the command processor, the dashboard and API pages, /metrics) are planned on an index with 10,000 environments: no
sequential scan of a table that grows with the organisation (issue 13, item 3).

The data, written straight into the database in one statement per table (not through the app): the steady state of
a large organisation with 10,000 environments over 200 repositories and 300 authors. 20 % are live (present,
provisioned; a tenth of those asleep), 78 % closed and destroyed (ghapp keeps the rows of closed pull requests),
1 % unconverged and due, 0.5 % leased (runs in flight), 0.5 % new previews waiting for a slot, 1 % with a state
left to publish. 30,000 finished runs over 60 days with 5 log lines each, 30,000 deliveries over 10 days, 2,000
commands of which 20 are pending. Then ANALYZE (and VACUUM, which autovacuum does in production: it keeps the
visibility map that index-only scans rely on).

Each statement is the module constant the app itself runs (EXPLAIN (FORMAT JSON), not executed), with the
arguments it gets in production."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ghapp import db as ghapp_db
from ghapp.core.contract import NOTIFY_CHANNEL
from ghapp.db import commands, desired, publishing, reads, retention, runs, sleep

ENVIRONMENTS = 10_000

SEED = [
    """
INSERT INTO environments (repo_id, repository, pr_number, name, installation_id, head_ref, author, title, pr_url,
                          desired, desired_sha, head_sha, generation, observed_generation, status, provisioned,
                          deployed_sha, preview_url, lease_owner, lease_until, next_attempt_at, created_at,
                          last_activity_at, last_request_at, expires_at, desired_sleeping, published_version,
                          publish_after)
SELECT 1000 + g % 200, 'acme/service-' || g % 200, g, 'pr-' || g || '-service-' || g % 200, 7, 'feature/' || g,
       'dev' || g % 300, 'Change ' || g, 'https://github.com/acme/service-' || g % 200 || '/pull/' || g,
       CASE WHEN live OR waiting OR leased THEN 'present' ELSE 'absent' END, sha, sha,
       2, CASE WHEN due OR waiting OR leased THEN 1 ELSE 2 END,
       CASE WHEN live THEN CASE WHEN g % 50 = 0 THEN 'sleeping' ELSE 'active' END
            WHEN waiting THEN 'pending' WHEN leased THEN 'creating' ELSE 'destroyed' END,
       live, CASE WHEN live THEN sha END, CASE WHEN live THEN 'https://pr-' || g || '.preview.example.com/' END,
       CASE WHEN leased THEN 'worker-1' END, CASE WHEN leased THEN now() + interval '10 minutes' END,
       now() - make_interval(secs => g), now() - make_interval(mins => g * 5), now() - make_interval(mins => g),
       CASE WHEN live THEN now() - make_interval(mins => g % 600) END,
       CASE WHEN live OR waiting OR leased THEN now() + make_interval(mins => g % 4320) END,
       live AND g % 50 = 0, CASE WHEN g % 100 = 3 THEN 0 ELSE 1 END, now()
FROM (SELECT g, md5(g::text) || left(md5('s' || g), 8) AS sha,
             g % 5 = 0 AS live, g % 100 = 1 AS due, g % 200 = 2 AS waiting, g % 200 = 4 AS leased
      FROM generate_series(1, $1::int) g) s
""",
    "UPDATE environments SET version = 1",  # nothing to publish but the 1 % whose published_version is 0
    """
INSERT INTO runs (environment_id, action, sha, generation, owner, state, started_at, finished_at)
SELECT e.id, 'apply', e.desired_sha, 1, 'worker-1', 'succeeded', now() - make_interval(hours => ((e.id * 3 + r) % 1440)::int),
       now() - make_interval(hours => ((e.id * 3 + r) % 1440)::int) + interval '40 seconds'
FROM environments e, generate_series(1, 3) r
""",
    "INSERT INTO run_logs (run_id, seq, line) SELECT id, s, 'terraform_data.app: Creating...' FROM runs, "
    "generate_series(1, 5) s",
    """
INSERT INTO deliveries (id, event, received_at)
SELECT gen_random_uuid()::text, 'pull_request', now() - make_interval(secs => g * 28) FROM generate_series(1, 30000) g
""",
    """
INSERT INTO commands (source, command, installation_id, repo_id, repository, pr_number, author, created_at,
                      next_attempt_at, done_at, outcome)
SELECT 'comment', 'deploy', 7, 1000 + g % 200, 'acme/service-' || g % 200, g, 'dev' || g % 300,
       now() - make_interval(mins => g * 7), now() - make_interval(mins => g * 7),
       CASE WHEN g % 100 <> 0 THEN now() - make_interval(mins => g * 7) END, CASE WHEN g % 100 <> 0 THEN 'done' END
FROM generate_series(1, 2000) g
""",
]

# Tables whose size grows with environments, runs, deliveries or commands: none may be read sequentially.
GROWING = {"environments", "runs", "run_logs", "deliveries", "commands"}

HOUR = 3600.0
# (what, statement, arguments as the app passes them)
STATEMENTS = [
    ("reconciler claim (operator cap 3)", runs._CLAIM, ("worker-2", 600.0, 3)),
    ("reconciler claim (no cap)", runs._CLAIM, ("worker-2", 600.0, None)),
    ("reconciler wake-up: seconds until due", runs._DUE, (3,)),
    ("intake: a batch locks its pull requests", desired._LOCK, ([1042, 1043, 1044], [42, 43, 44])),
    ("intake: one pull request", desired._CURRENT, (1042, 42)),
    ("resync: repositories with live environments", reads._LIVE_REPOSITORIES, ()),
    ("resync: live environments of a repository", reads._LIVE_ENVIRONMENTS, (1042,)),
    ("expiry: TTL reaper", desired._EXPIRED, ()),
    ("expiry: reminders due", desired._REMINDER_DUE, (2 * HOUR,)),
    ("sleeper: idle previews", sleep._SLEEP_IDLE, (HOUR, NOTIFY_CHANNEL)),
    ("retention: old runs", retention._OLD_RUNS, (30 * 86400.0, retention.RUNS_PER_BATCH)),
    ("retention: their logs", retention._DELETE_RUN_LOGS, ([1, 2, 3], retention.BATCH)),
    ("retention: the runs", retention._DELETE_RUNS, ([1, 2, 3],)),
    ("retention: done commands", retention._DELETE_COMMANDS, (30 * 86400.0, retention.BATCH)),
    ("retention: deliveries", retention._DELETE_DELIVERIES, (7 * 86400.0, retention.BATCH)),
    ("prune sources: commits in use", retention._COMMITS_IN_USE, ()),
    ("publisher: states to publish", publishing._DUE, (50,)),
    ("command processor: claim", commands._CLAIM, (60.0,)),
    ("command processor: next due", commands._NEXT_DUE, ()),
    ("dashboard: first page", reads._LIST_NEWEST, (None, None, None, 200)),
    ("dashboard: next page", reads._LIST_NEWEST, (5000, None, None, 200)),
    ("dashboard: one status", reads._LIST_NEWEST, (None, "failed", None, 200)),
    ("dashboard: one repository", reads._LIST_NEWEST, (None, None, "acme/service-42", 200)),
    ("dashboard: counts per repository and status", reads._COUNT_BY_REPOSITORY_AND_STATUS, ()),
    ("API: first page", reads._LIST, (0, None, None, 100)),
    ("API: a later page", reads._LIST, (5000, None, None, 100)),
    ("API: one repository", reads._LIST, (0, None, "acme/service-42", 100)),
    ("/metrics: environments by status", reads._COUNT_BY_STATUS, ()),
]


def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


@pytest.fixture
async def ten_thousand(db):
    await ghapp_db.migrate(db)
    async with db.acquire() as conn:
        await conn.execute(SEED[0], ENVIRONMENTS)
        for statement in SEED[1:]:
            await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE")
        assert await conn.fetchval("SELECT count(*) FROM environments") == ENVIRONMENTS
    return db


async def test_every_repeated_statement_uses_an_index_on_ten_thousand_environments(ten_thousand):
    failures = []
    async with ten_thousand.acquire() as conn:
        for what, statement, args in STATEMENTS:
            (raw,) = await conn.fetchrow("EXPLAIN (FORMAT JSON) " + statement, *args)
            plan = json.loads(raw)[0]["Plan"]
            scanned = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes(plan)]
            sequential = [t for kind, t, _ in scanned if kind == "Seq Scan" and t in GROWING]
            indexes = [i for kind, _, i in scanned if i is not None]
            if sequential or not indexes:
                failures.append(f"{what}: sequential scan of {sequential}, indexes {indexes}\n{json.dumps(plan)}")
    assert not failures, "\n\n".join(failures)


async def test_the_check_sees_a_sequential_scan(ten_thousand):
    """The walk over the plan finds a Seq Scan where there is one (a filter no index serves)."""
    async with ten_thousand.acquire() as conn:
        (raw,) = await conn.fetchrow("EXPLAIN (FORMAT JSON) SELECT id FROM environments WHERE title LIKE '%x%'")
    kinds = [(n["Node Type"], n.get("Relation Name")) for n in nodes(json.loads(raw)[0]["Plan"])]
    assert ("Seq Scan", "environments") in kinds
