"""Benchmark: GitHub API requests of one simulated day with 1,000 live environments over 200 repositories
(issue 13, item 2). Run by hand; prints Markdown tables.

  python -m bench.github_budget                      # 1,000 environments, 200 repositories, 24 h, the trickle
  python -m bench.github_budget --pushes 0 --opens 0 --closes 0     # the background alone

The whole app runs in this process (`create_app`: real intake over HTTP, reconciler with real Terraform on
tests/modules/scripted, publisher, command processor) on an embedded PostgreSQL, against the strict fake GitHub
(tests/fake_github, ETags, every request validated and recorded). One installation holds the 200 repositories;
the organisation has no `.github` repository; no repository has `.github/preview.yml` (operator's defaults:
GHAPP_ENV_TTL 72 h, GHAPP_EXPIRY_WARNING 2 h, GHAPP_SLEEP_AFTER 1 h, GHAPP_RESYNC_INTERVAL 10 min,
GHAPP_RESYNC_BATCH 50).

Setup (not counted): 5 open pull requests per repository on the fake GitHub, and their environments inserted in
the database as a finished apply leaves them, asleep (the steady state of previews nobody visits), each last
pushed at a time drawn uniformly over the past 72 h (so a third expire during the day), marked published; one
full resync round warms the client's ETag cache: the day starts in the steady state of a running ghapp. One
difference, which overstates the count: the database knows no check run, comment or deployment of an inserted
environment, so its first publish of the day creates them (and looks for the sticky comment first): up to 2
calls more than the updates a running ghapp would make.

The day: 144 steps of 10 simulated minutes. A step delivers the step's events (signed webhooks; the fake GitHub's
pull request changes first, as on GitHub), lets the workers converge and publish, then runs the periodic passes
the app runs (the resync pass, the expiry reaper and its reminders, the idle sleeper) and lets their consequences
converge and publish too. Then the clock moves on 10 minutes: the App client's clock (installation tokens, renewed
10 minutes before their hour is up, and what it remembers) and the database's times (expires_at, last activity,
last request, reminder: moved back by 10 minutes, with triggers off so nothing looks changed). Each simulated
hour starts a new rate-limit window on the fake GitHub.

The trickle (seeded, uniform over the day): --pushes pushes to random live pull requests (a push wakes a sleeping
preview; it sleeps again after an idle hour), --opens new pull requests, --closes closed ones.

Counted as GitHub counts: every answer but 304 Not Modified. Installation-token requests (App JWT) are charged by
GitHub to the App, not to the installation: shown apart.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import logging
import os
import random
import shutil
import socket
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from bench._common import SCRIPTED_MODULE, fake_sha, machine_facts, print_facts, table
from ghapp.config import Settings
from ghapp.core.contract import environment_name
from ghapp.db.embedded import EmbeddedPostgres
from ghapp.web import keys
from ghapp.web.app import create_app
from ghapp.workers.periodic import Resync, expire_and_prune, sleep_idle
from tests.fake_github import FakeGitHub
from tests.support import Deliveries

SECRET = "bench-webhook-secret"
INSTALLATION = 1
ORG = "octo-org"
HOURLY = 5000  # one installation's requests per hour
TARGET = 0.10
TTL = 72 * 3600.0
STEP = 600.0  # GHAPP_RESYNC_INTERVAL's default: one resync pass per step
JWT_OPERATIONS = {"apps/create-installation-access-token"}


class SimClock:
    """The App client's clock: real time plus the simulated time that has passed."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Day:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.github = FakeGitHub(rate_limit=HOURLY)
        self.github.etag_per_token = args.etag_per_token
        self.github.validate_responses = False  # its own answers (the tests check them); requests are still checked
        self.deliveries = Deliveries(SECRET)
        self.repos = [(f"{ORG}/service-{i:03d}", 700_000 + i) for i in range(args.repos)]
        self.live: dict[tuple[str, int], int] = {}  # (repository, number) -> repo id, open on GitHub
        self.next_number: dict[str, int] = {}
        self.clock = SimClock()
        self.steps: list[list] = []  # the calls of each step

    # --- setup ----------------------------------------------------------------------------------------------------

    def settings(self, database_url: str) -> Settings:
        terraform = shutil.which("terraform") or shutil.which("ghapp-terraform")
        assert terraform, "no Terraform: `pip install -e '.[dev]'` installs ghapp-terraform"
        return Settings(
            webhook_secret=SECRET,
            database_url=database_url,
            data_dir=self.root / "data",
            terraform_module=SCRIPTED_MODULE,
            terraform_bin=terraform,
            max_parallel_runs=4,
            poll_interval=0.5,
            push_settle=0.0,
            app_id=str(self.github.app_id),
            private_key=self.github.private_key_pem,
            github_api_url=self.github.base_url,
            public_url="https://ghapp.example.com",
            resync_interval=30 * 86400.0,  # the bench runs the resync passes itself, one per simulated interval
            env_ttl=TTL,
        )

    def populate_github(self) -> None:
        self.github.add_installation(INSTALLATION, ORG, [name for name, _ in self.repos])
        for name, repo_id in self.repos:
            self.github.repos[name.lower()].id = repo_id
            for number in range(1, self.args.envs // self.args.repos + 1):
                self.github.add_pull(name, number, head_sha=fake_sha(name, number), user="octocat")
                self.live[(name, number)] = repo_id
            self.next_number[name] = self.args.envs // self.args.repos + 1

    async def insert_environments(self, conn: asyncpg.Connection) -> None:
        """The live environments as a finished apply left them, asleep, last pushed within the past 72 h."""
        rows = []
        for (name, number), repo_id in self.live.items():
            pushed_ago = self.rng.uniform(0, TTL)
            rows.append((repo_id, name, number, fake_sha(name, number), pushed_ago))
        inserted = await conn.fetch(
            """INSERT INTO environments (repo_id, repository, pr_number, installation_id, head_ref, author, title,
                   pr_url, desired, desired_sha, head_sha, generation, observed_generation, status, provisioned,
                   deployed_sha, preview_url, outputs, base_ref, desired_sleeping, last_activity_at, expires_at)
               SELECT r.repo_id, r.repository, r.number, $1, 'feature-' || r.number, 'octocat',
                      'Change #' || r.number, 'https://github.com/' || r.repository || '/pull/' || r.number,
                      'present', r.sha, r.sha, 1, 1, 'sleeping', true, r.sha,
                      'http://pr-' || r.number || '.preview.test/', jsonb_build_object('sha', r.sha), 'main', true,
                      now() - make_interval(secs => r.ago), now() - make_interval(secs => r.ago) + $2::interval
               FROM unnest($3::bigint[], $4::text[], $5::int[], $6::text[], $7::float8[])
                    AS r(repo_id, repository, number, sha, ago)
               RETURNING id, repository, pr_number""",
            INSTALLATION,
            dt.timedelta(seconds=TTL),
            *map(list, zip(*rows, strict=True)),
        )
        await conn.executemany(
            "UPDATE environments SET name = $2 WHERE id = $1",
            [(r["id"], environment_name(r["id"], r["repository"], r["pr_number"])) for r in inserted],
        )
        # published: nothing left to publish (published_version changes, so the version trigger does not fire)
        await conn.execute("UPDATE environments SET published_version = version")

    # --- the day --------------------------------------------------------------------------------------------------

    def schedule(self, steps: int) -> dict[int, list[str]]:
        events: dict[int, list[str]] = collections.defaultdict(list)
        for kind, count in (("push", self.args.pushes), ("open", self.args.opens), ("close", self.args.closes)):
            for _ in range(count):
                events[self.rng.randrange(steps)].append(kind)
        for step in events.values():
            self.rng.shuffle(step)
        return events

    async def deliver(self, session: aiohttp.ClientSession, url: str, kind: str) -> None:
        if kind == "open":
            name, repo_id = self.rng.choice(self.repos)
            number = self.next_number[name]
            self.next_number[name] += 1
            sha = fake_sha(name, number)
            self.github.add_pull(name, number, head_sha=sha, user="octocat")
            self.live[(name, number)] = repo_id
            action = "opened"
        else:
            (name, number), repo_id = self.rng.choice(sorted(self.live.items()))
            pull = self.github.pulls[(name.lower(), number)]
            if kind == "push":
                sha = pull.head_sha = fake_sha(name, number, self.rng.random())
                action = "synchronize"
            else:
                sha = pull.head_sha
                pull.state = "closed"
                del self.live[(name, number)]
                action = "closed"
        data = self.deliveries.pull_request(action, number=number, sha=sha, repo_id=repo_id, repository=name)
        data["installation"] = {"id": INSTALLATION, "node_id": "x"}
        data["pull_request"]["user"]["login"] = "octocat"
        data["pull_request"]["head"]["ref"] = f"feature-{number}"
        data["pull_request"]["base"]["ref"] = "main"
        data["pull_request"]["labels"] = []
        data["pull_request"]["draft"] = False
        body, headers = self.deliveries.signed("pull_request", data)
        async with session.post(url + "/webhooks", data=body, headers=headers) as reply:
            if reply.status not in (200, 202):
                raise RuntimeError(f"{action} {name}#{number}: {reply.status} {await reply.text()}")

    async def settle(self, pool: asyncpg.Pool, timeout: float) -> bool:
        """Wait until every environment is converged and published (True), or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = await pool.fetchval(
                """SELECT count(*) FROM environments
                   WHERE generation > observed_generation OR version > published_version OR lease_owner IS NOT NULL"""
            )
            if pending == 0:
                return True
            await asyncio.sleep(0.2)
        return False

    async def advance(self, pool: asyncpg.Pool, seconds: float) -> None:
        """Move the database's times `seconds` into the past (so its now() is that much later for them), without
        the change counting as one (triggers off), and the App client's clock forward."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            shift = dt.timedelta(seconds=seconds)
            await conn.execute(
                """UPDATE environments SET expires_at = expires_at - $1::interval,
                       last_activity_at = last_activity_at - $1::interval,
                       last_request_at = last_request_at - $1::interval,
                       expiry_warned_at = expiry_warned_at - $1::interval""",
                shift,
            )
        self.clock.offset += seconds

    async def run(self) -> dict:
        args = self.args
        pg = EmbeddedPostgres(self.root / "pg")
        database_url = pg.start()
        await self.github.start()
        self.populate_github()
        settings = self.settings(database_url)
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        unsettled = 0
        try:
            while not app[keys.READY].is_set():
                await asyncio.sleep(0.1)
            pool: asyncpg.Pool = app[keys.POOL]
            github_app = app[keys.GITHUB]
            github_app.clock = self.github.clock = self.clock
            async with pool.acquire() as conn:
                await self.insert_environments(conn)
            # warm-up, not counted: one whole resync round (the client's ETag cache warm, as in a running ghapp)
            self.github.set_rate_limit(10**9, limit=10**9)
            t0 = time.monotonic()
            resync = Resync(pool, github_app, settings)
            for _ in range(-(-args.repos // settings.resync_batch)):
                await resync.once()
            warmup = time.monotonic() - t0
            steps = int(args.hours * 3600 // STEP)
            events = self.schedule(steps)
            per_hour = int(3600 // STEP)
            t0 = time.monotonic()
            async with aiohttp.ClientSession() as session:
                for step in range(steps):
                    if step % per_hour == 0:  # a new rate-limit window
                        self.github.set_rate_limit(HOURLY, limit=HOURLY)
                    first = len(self.github.calls())
                    for kind in events.get(step, []):
                        await self.deliver(session, url, kind)
                    unsettled += not await self.settle(pool, 300)
                    await resync.once()
                    await expire_and_prune(pool, settings, github_app.budget.remaining)
                    await sleep_idle(pool, settings)
                    unsettled += not await self.settle(pool, 300)
                    self.steps.append(self.github.calls()[first:])
                    await self.advance(pool, STEP)
                    if args.progress and step % per_hour == per_hour - 1:
                        counted = sum(1 for c in self.steps[-1] if c.status != 304)
                        print(
                            f"  simulated hour {step // per_hour + 1}: {time.monotonic() - t0:.0f} s, "
                            f"last step {counted} counted",
                            flush=True,
                        )
            elapsed = time.monotonic() - t0
            async with pool.acquire() as conn:
                summary = dict(
                    await conn.fetchrow(
                        """SELECT count(*) FILTER (WHERE desired = 'present') AS live,
                                  count(*) FILTER (WHERE expired_at IS NOT NULL) AS expired,
                                  count(*) FILTER (WHERE expiry_warned_at IS NOT NULL OR expired_at IS NOT NULL)
                                      AS reminded,
                                  (SELECT count(*) FROM runs) AS runs
                           FROM environments"""
                    )
                )
            return {
                "steps": self.steps,
                "per_hour": per_hour,
                "warmup": warmup,
                "elapsed": elapsed,
                "unsettled": unsettled,
                "violations": list(self.github.violations),
                **summary,
            }
        finally:
            await runner.cleanup()
            await self.github.close()
            pg.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the report ------------------------------------------------------------------------------------------------------


def report(r: dict, args: argparse.Namespace) -> None:
    steps, per_hour = r["steps"], r["per_hour"]
    hours = [sum(steps[i : i + per_hour], []) for i in range(0, len(steps), per_hour)]

    def installation(calls: list) -> list:
        return [c for c in calls if c.status != 304 and c.operation_id not in JWT_OPERATIONS]

    counted = [len(installation(h)) for h in hours]
    tokens = [sum(1 for c in h if c.operation_id in JWT_OPERATIONS) for h in hours]
    average, peak = sum(counted) / len(hours), max(counted)
    print()
    print(
        f"day: {args.envs} live environments over {args.repos} repositories, {len(hours)} simulated hours in "
        f"{r['elapsed']:.0f} s (warm-up {r['warmup']:.0f} s); trickle: {args.pushes} pushes, {args.opens} opened, "
        f"{args.closes} closed; ETags per token: {args.etag_per_token}; {r['runs']} Terraform runs in all; "
        f"at the end {r['live']} live, {r['expired']} "
        f"expired, {r['reminded']} reminded; steps that did not settle in time: {r['unsettled']}; fake GitHub "
        f"violations: {len(r['violations'])}"
    )
    print()
    print(
        table(
            ["installation requests/hour", "average", "peak hour", "% of 5,000 (average)", "% of 5,000 (peak)"],
            [
                [
                    "counted (not 304)",
                    f"{average:.0f}",
                    peak,
                    f"{100 * average / HOURLY:.1f} %",
                    f"{100 * peak / HOURLY:.1f} %",
                ]
            ],
        )
    )
    verdict = "met" if average <= TARGET * HOURLY else "NOT met"
    print(f"\ntarget: average <= {TARGET * HOURLY:.0f}/h ({TARGET:.0%}): {verdict}")
    print(
        f"App (JWT) token requests/hour, charged to the App: average {sum(tokens) / len(hours):.0f}, peak {max(tokens)}"
    )
    day = sum(hours, [])
    by_op = collections.Counter(c.operation_id for c in day if c.status != 304)
    free = collections.Counter(c.operation_id for c in day if c.status == 304)
    refused = collections.Counter(c.operation_id for c in day if c.status >= 400)
    print()
    print(
        table(
            ["endpoint (operation)", "counted/day", "counted/hour", "304s/day (free)", "of which 4xx/5xx"],
            [
                [op, by_op[op], f"{by_op[op] / len(hours):.1f}", free[op], refused[op]]
                for op in sorted(set(by_op) | set(free), key=lambda o: (-by_op[o], o))
            ],
        )
    )
    print()
    print("counted installation requests per simulated hour: " + ", ".join(map(str, counted)))
    kinds = collections.Counter(
        ("content" if "contents" in (c.json or {}).get("permissions", {}) else "report", c.status)
        for c in day
        if c.operation_id in JWT_OPERATIONS
    )
    print("token requests/day by kind and answer: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(kinds.items())))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=int, default=1000)
    p.add_argument("--repos", type=int, default=200)
    p.add_argument("--hours", type=float, default=24)
    p.add_argument("--pushes", type=int, default=200, help="pushes over the day")
    p.add_argument("--opens", type=int, default=50, help="pull requests opened over the day")
    p.add_argument("--closes", type=int, default=50, help="pull requests closed over the day")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--progress", action="store_true", help="a line per simulated hour")
    p.add_argument(
        "--etag-per-token",
        action="store_true",
        help="the fake GitHub's ETags depend on the token too: a renewed token's first listing is counted",
    )
    return p.parse_args()


async def main(args: argparse.Namespace) -> None:
    print_facts(machine_facts())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    root = Path(tempfile.mkdtemp(prefix="ghapp-bench-budget-"))
    root.chmod(0o755)
    try:
        result = await Day(args, root).run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(result, args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parse_args()))
