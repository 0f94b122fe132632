"""Benchmark: 4 replicas on one PostgreSQL, 200 pull requests, a fast module (issue 13, item 4). Run by hand;
prints Markdown tables.

  python -m bench.replicas                          # 4 replicas x 4 slots, 200 PRs, apply = sleep 10 s (~8-20 min)
  python -m bench.replicas --slots 8 --delay 5      # other slot counts and apply lengths

One PostgreSQL (the embedded server's binaries, started here over loopback TCP with a password: it stands for an
external server, as in tests/test_external_database.py) and --replicas real `ghapp serve` processes on it through
DATABASE_URL, each with its own GHAPP_DATA_DIR (a pod's volume: nothing shared but the database) and
GHAPP_MAX_PARALLEL_RUNS = --slots, online against the fake GitHub (tests/fake_github, in this process; without its
OpenAPI validation unless --validate-github: see QuickFakeGitHub), GHAPP_PUSH_SETTLE=0 (a push is due at once, so the
ideal below holds). Each replica's DATABASE_URL carries `application_name=ghapp-rN`, which the state role's PG_CONN_STR
keeps, so pg_stat_activity tells whose connection is whose. The module is tests/modules/scripted (apply = two parallel
`terraform_data` local-exec steps sleeping TF_VAR_delay s: a fixed, known apply) with `backend "pg" {}`: states in the
same database, as replicas need. GHAPP_TERRAFORM_BIN is a wrapper that logs time, TF_WORKSPACE, TF_VAR_git_sha and argv
of every invocation, then execs Terraform.

1. Warm-up: one full wave (replicas x slots PRs at once: no replica can take more than its slots, so every replica
   runs `terraform init` now, not during the measurement), then --singles PRs one at a time: one apply = the median
   time from delivery to `active`.
2. Generation 1: --prs `pull_request.opened` deliveries (distinct PRs over --repos repositories), POSTed round-robin
   over the replicas, 20 at a time. Time from just before the first POST (PostgreSQL's clock) to the last outcome
   recorded (`runs.finished_at`), against ideal = ceil(prs / (replicas x slots)) x one apply.
3. Generation 2: a push (`pull_request.synchronize`, new head SHA) to every one of them, measured the same way.
For each generation: apply runs and Terraform `apply` invocations per environment (exactly 1 each, 0 duplicates),
runs that did not succeed, the most runs in flight at once (all replicas, and per replica) against the slots, and
per replica the peak of its PostgreSQL connections (pg_stat_activity sampled every 0.1 s): the pool, the LISTEN
connections and Terraform's state-role connections.
Every process started is stopped at the end (the leftover check of bench/scale.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from bench._common import (
    SCRIPTED_MODULE,
    SECRET,
    CpuMeter,
    GhappServe,
    bundled_terraform,
    fake_sha,
    free_port,
    machine_facts,
    print_facts,
    table,
)
from bench.scale import kill_leftovers
from ghapp.db.embedded import EmbeddedPostgres
from tests.fake_github.server import FakeGitHub
from tests.support import Deliveries

OWNER = "bench-org"
AUTHOR = "Codertocat"
INSTALLATION = 1
FIRST_PR = 1000  # measured PRs: 1000.. ; warm-up and singles below


class QuickFakeGitHub(FakeGitHub):
    """The fake GitHub without its OpenAPI validation of every request and answer (the tests keep it): validating
    costs tens of ms of this process's CPU per call, so with 4 replicas publishing 200 previews the fake, not ghapp,
    became the bottleneck (found in the first runs). Requests are still authenticated, routed and answered alike."""

    def _request_problems(self, request, spec_request, raw, body) -> list[str]:
        return []

    def _respond(self, call, spec_request, headers, status, data):
        call.status = status
        binary = isinstance(data, bytes)
        raw = data if binary else b"" if status in (204, 304) or data is None else json.dumps(data).encode()
        response = web.Response(status=status, body=raw or None, headers=headers)
        if raw and not binary:
            response.content_type, response.charset = "application/json", "utf-8"
        return response


def write_module(path: Path) -> None:
    """tests/modules/scripted with its state in PostgreSQL (the backend replicas need)."""
    path.mkdir(parents=True)
    text = (SCRIPTED_MODULE / "main.tf").read_text()
    (path / "main.tf").write_text('terraform {\n  backend "pg" {}\n}\n\n' + text)
    path.chmod(0o755)
    (path / "main.tf").chmod(0o644)


def write_wrapper(path: Path, log: Path) -> None:
    real = shutil.which("terraform") or bundled_terraform()
    if not real:
        raise SystemExit("no terraform on PATH and no ghapp-terraform: pip install -e . first")
    path.write_text(
        "#!/bin/sh\n"
        f'printf \'%s %s %s %s\\n\' "$(date +%s.%N)" "${{TF_WORKSPACE:--}}" "${{TF_VAR_git_sha:--}}" "$*" >> "{log}"\n'
        f'exec "{real}" "$@"\n'
    )
    path.chmod(0o755)
    log.touch()
    log.chmod(0o666)  # Terraform runs as the run user (ghapp/isolation.py)


def applies(log: Path) -> list[tuple[float, str, str]]:
    """(time, workspace, git sha) of every `terraform apply` invoked so far."""
    out = []
    for line in log.read_text().splitlines():
        t, ws, sha, argv = (line.split(" ", 3) + ["", "", ""])[:4]
        if argv.startswith("apply"):
            out.append((float(t), ws, sha))
    return out


class ConnectionSampler:
    """The peak, per replica (application_name), of its connections to PostgreSQL: all, the app's pool (the app's
    role, not LISTEN), LISTEN, and Terraform's state role; sampled every `every` s from pg_stat_activity, in a thread
    of its own (this process's event loop also serves the fake GitHub)."""

    QUERY = """SELECT application_name AS app,
                      count(*) AS total,
                      count(*) FILTER (WHERE usename = current_user AND query NOT LIKE 'LISTEN %') AS pool,
                      count(*) FILTER (WHERE usename = current_user AND query LIKE 'LISTEN %') AS listen,
                      count(*) FILTER (WHERE usename <> current_user) AS state
               FROM pg_stat_activity
               WHERE backend_type = 'client backend' AND application_name LIKE 'ghapp-r%'
               GROUP BY 1"""

    def __init__(self, url: str, every: float = 0.05):
        self.url, self.every = url, every
        self.peak: dict[str, Counter] = defaultdict(Counter)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), daemon=True)

    def reset(self) -> None:
        self.peak = defaultdict(Counter)
        self.samples = 0

    async def _loop(self) -> None:
        conn = await asyncpg.connect(self.url, server_settings={"application_name": "bench"})
        try:
            while not self._stop.is_set():
                peaks = self.peak
                for r in await conn.fetch(self.QUERY):
                    peak = peaks[r["app"]]
                    for key in ("total", "pool", "listen", "state"):
                        peak[key] = max(peak[key], r[key])
                self.samples += 1
                await asyncio.sleep(self.every)
        finally:
            await conn.close()

    def start(self) -> ConnectionSampler:
        self._thread.start()
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 10)


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path):
        self.args = args
        self.root = root
        self.tf_log = root / "terraform-invocations.log"
        self.wrapper = root / "terraform-wrapper.sh"
        self.module = root / "module"
        self.deliveries = Deliveries(SECRET)
        self.repos = [f"{OWNER}/service-{i}" for i in range(args.repos)]
        self.repo_ids = {name: 500_000 + i for i, name in enumerate(self.repos)}
        self.replicas: list[GhappServe] = []
        self.heads: dict[tuple[str, int], str] = {}

    def pr(self, k: int) -> tuple[str, int]:
        """The k-th pull request: repositories in turn."""
        return self.repos[k % len(self.repos)], k

    async def deliver(self, session: aiohttp.ClientSession, replica: GhappServe, action: str, pr) -> int:
        repo, number = pr
        data = self.deliveries.pull_request(
            action, number=number, sha=self.heads[pr], repo_id=self.repo_ids[repo], repository=repo
        )
        data["pull_request"]["head"]["ref"] = f"change-{number}"
        data["installation"] = {"id": INSTALLATION, "node_id": "x"}
        body, headers = self.deliveries.signed("pull_request", data)
        async with session.post(replica.url + "/webhooks", data=body, headers=headers) as r:
            reply = await r.json()
            if r.status != 202:
                raise RuntimeError(f"{repo}#{number}: {r.status} {reply}")
            return reply["environment_id"]

    async def deliver_all(self, session: aiohttp.ClientSession, action: str, prs: list) -> list[int]:
        gate = asyncio.Semaphore(20)

        async def one(i: int, pr) -> int:
            async with gate:
                return await self.deliver(session, self.replicas[i % len(self.replicas)], action, pr)

        return list(await asyncio.gather(*(one(i, pr) for i, pr in enumerate(prs))))

    def push(self, github: FakeGitHub, prs: list, generation: int) -> None:
        for pr in prs:
            self.heads[pr] = github.pulls[(pr[0].lower(), pr[1])].head_sha = fake_sha("replicas", *pr, generation)

    @staticmethod
    async def converged(conn: asyncpg.Connection, ids: list[int], heads: list[str]) -> bool:
        rows = await conn.fetch(
            """SELECT status, deployed_sha, generation, observed_generation FROM environments
               WHERE id = ANY($1::bigint[]) ORDER BY array_position($1::bigint[], id)""",
            ids,
        )
        if any(r["status"] == "failed" for r in rows):
            raise RuntimeError("an environment failed: see the replicas' logs")
        return len(rows) == len(ids) and all(
            r["status"] == "active" and r["deployed_sha"] == sha and r["generation"] == r["observed_generation"]
            for r, sha in zip(rows, heads, strict=True)
        )

    async def wait_converged(self, conn: asyncpg.Connection, ids: list[int], prs: list, timeout: float) -> None:
        heads = [self.heads[pr] for pr in prs]
        deadline = time.monotonic() + timeout
        while not await self.converged(conn, ids, heads):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not converged after {timeout:.0f}s")
            for g in self.replicas:
                if g.proc.poll() is not None:
                    raise RuntimeError(f"{g.workdir.name} exited:\n{g.log_tail()}")
            await asyncio.sleep(0.2)

    async def phase(
        self, conn: asyncpg.Connection, session: aiohttp.ClientSession, action: str, prs: list, one: float
    ) -> dict:
        a = self.args
        tf0 = len(applies(self.tf_log))
        t0 = await conn.fetchval("SELECT clock_timestamp()")
        first_run = await conn.fetchval("SELECT coalesce(max(id), 0) FROM runs")
        meter = CpuMeter(**{g.workdir.name: g.proc.pid for g in self.replicas}).start()
        wall0 = time.perf_counter()
        ids = await self.deliver_all(session, action, prs)
        posted = time.perf_counter() - wall0
        slots = len(self.replicas) * a.slots
        ideal = math.ceil(len(prs) / slots) * one
        await self.wait_converged(conn, ids, prs, timeout=10 * ideal + 120)
        observed = time.perf_counter() - wall0
        cpu = meter.stop()
        runs = [
            dict(r)
            for r in await conn.fetch(
                """SELECT id, environment_id, action, generation, state, owner, started_at, finished_at
                   FROM runs WHERE id > $1 ORDER BY id""",
                first_run,
            )
        ]
        ours = set(ids)
        mine = [r for r in runs if r["environment_id"] in ours]
        owners = self.owner_names()
        for r in mine:
            r["replica"] = owners.get(int(r["owner"].split(":")[1]), r["owner"])
        last = max(r["finished_at"] for r in mine)
        names = dict(await conn.fetch("SELECT id, name FROM environments WHERE id = ANY($1::bigint[])", ids))
        calls = applies(self.tf_log)[tf0:]
        per_workspace = Counter(ws for _t, ws, _sha in calls)
        heads = {names[i]: self.heads[pr] for i, pr in zip(ids, prs, strict=True)}
        wrong_sha = [(ws, sha) for _t, ws, sha in calls if ws in heads and sha != heads[ws]]
        per_env = Counter(r["environment_id"] for r in mine if r["action"] == "apply")
        per_env_generation = Counter((r["environment_id"], r["generation"]) for r in mine if r["action"] == "apply")
        return {
            "action": action,
            "prs": len(prs),
            "posted_s": posted,
            "observed_s": observed,
            "total_s": (last - t0).total_seconds(),
            "ideal_s": ideal,
            "one_apply_s": one,
            "runs": mine,
            "other_runs": [r for r in runs if r["environment_id"] not in ours],
            "runs_per_env": Counter(per_env[i] for i in ids),
            "max_runs_per_env_generation": max(per_env_generation.values()),
            "not_succeeded": Counter(r["state"] for r in mine if r["state"] != "succeeded"),
            "tf_applies_per_env": Counter(per_workspace[names[i]] for i in ids),
            "tf_applies_other": sum(n for ws, n in per_workspace.items() if ws not in heads),
            "wrong_sha": wrong_sha,
            "in_flight": in_flight(mine),
            "run_s": [(r["finished_at"] - r["started_at"]).total_seconds() for r in mine],
            "wait_s": handovers(mine),
            "cpu": cpu,
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }

    def owner_names(self) -> dict[int, str]:
        return {g.proc.pid: g.workdir.name for g in self.replicas}

    def serve(self, i: int, url: str, github: FakeGitHub) -> GhappServe:
        a = self.args
        return GhappServe(
            self.root / f"r{i}",
            DATABASE_URL=f"{url}&application_name=ghapp-r{i}",
            GHAPP_MAX_PARALLEL_RUNS=str(a.slots),
            GHAPP_TERRAFORM_MODULE=str(self.module),
            GHAPP_TERRAFORM_BIN=str(self.wrapper),
            GHAPP_PUSH_SETTLE="0",
            GHAPP_SHUTDOWN_GRACE="2s",
            GITHUB_APP_ID=str(github.app_id),
            GITHUB_PRIVATE_KEY=github.private_key_pem,
            GITHUB_API_URL=github.base_url,
            TF_VAR_delay=str(a.delay),
        )


def handovers(runs: list[dict]) -> list[float]:
    """Per replica, seconds from a run's end to the start of the next run that took its slot (k-th start after the
    first `slots` takes the slot of the (k - slots)-th end)."""
    out = []
    by_replica: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_replica[r["replica"]].append(r)
    for rs in by_replica.values():
        starts = sorted(r["started_at"] for r in rs)
        ends = sorted(r["finished_at"] for r in rs)
        slots = in_flight(rs)["all"]
        out += [(starts[k] - ends[k - slots]).total_seconds() for k in range(slots, len(starts))]
    return out


def in_flight(runs: list[dict]) -> dict[str, int]:
    """The most runs in flight at once: all, and per replica."""

    def peak(rs: list[dict]) -> int:
        events = sorted([(r["started_at"], 1) for r in rs] + [(r["finished_at"], -1) for r in rs])
        now = best = 0
        for _t, d in events:  # at equal times the end (-1) sorts first: a slot handed over is not two in flight
            now += d
            best = max(best, now)
        return best

    by_owner: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_owner[r.get("replica", "?")].append(r)
    return {"all": peak(runs), **{name: peak(rs) for name, rs in sorted(by_owner.items())}}


async def run(args: argparse.Namespace, root: Path) -> tuple[list[dict], dict]:
    bench = Bench(args, root)
    write_module(bench.module)
    write_wrapper(bench.wrapper, bench.tf_log)
    password = secrets.token_hex(12)
    server = EmbeddedPostgres(root / "pg" / "data", tcp_port=free_port(), password=password)
    url = await asyncio.to_thread(server.start)
    info: dict = {}
    try:
        # GitHub's 5,000 requests an hour per installation stopped the second generation (bench/github_budget.py
        # is about that budget): here it is out of the way, and the calls are counted
        fake = FakeGitHub if args.validate_github else QuickFakeGitHub
        async with fake(rate_limit=1_000_000) as github:
            for name in bench.repos:
                github.add_repo(name, bench.repo_ids[name])
                github.set_permission(name, AUTHOR, "admin")
            github.add_installation(INSTALLATION, OWNER, bench.repos)
            warm = [bench.pr(k) for k in range(1, 1 + args.replicas * args.slots + args.singles)]
            measured = [bench.pr(k) for k in range(FIRST_PR, FIRST_PR + args.prs)]
            for pr in warm + measured:
                bench.heads[pr] = fake_sha("replicas", *pr, 1)
                github.add_pull(  # as the deliveries say it (else the resync sees a change and resolves again)
                    pr[0],
                    pr[1],
                    head_sha=bench.heads[pr],
                    head_ref=f"change-{pr[1]}",
                    base_ref="master",
                    labels=["bug"],
                    title="Update the README with new information.",
                    user=AUTHOR,
                )
            t0 = time.perf_counter()
            for i in range(args.replicas):
                bench.replicas.append(bench.serve(i, url, github))
            for g in bench.replicas:
                await asyncio.to_thread(g.start)
            info["ready_s"] = time.perf_counter() - t0
            conn = await asyncpg.connect(url, server_settings={"application_name": "bench"})
            sampler = ConnectionSampler(url).start()
            try:
                async with aiohttp.ClientSession() as session:
                    wave = warm[: args.replicas * args.slots]
                    ids = await bench.deliver_all(session, "opened", wave)
                    await bench.wait_converged(conn, ids, wave, timeout=300)
                    singles = []
                    for pr in warm[len(wave) :]:
                        env_id = await bench.deliver(
                            session, bench.replicas[len(singles) % args.replicas], "opened", pr
                        )
                        await bench.wait_converged(conn, [env_id], [pr], timeout=120)
                        singles.append(
                            await conn.fetchrow(
                                """SELECT e.created_at, r.started_at, r.finished_at FROM environments e
                                   JOIN runs r ON r.environment_id = e.id WHERE e.id = $1""",
                                env_id,
                            )
                        )
                    one = statistics.median((r["finished_at"] - r["created_at"]).total_seconds() for r in singles)
                    info["singles"] = [(r["finished_at"] - r["created_at"]).total_seconds() for r in singles]
                    info["one_run_s"] = statistics.median(
                        (r["finished_at"] - r["started_at"]).total_seconds() for r in singles
                    )
                    info["warmup_peak"] = {k: dict(v) for k, v in sampler.peak.items()}
                    results = []
                    for generation, action in ((1, "opened"), (2, "synchronize")):
                        if generation > 1:
                            bench.push(github, measured, generation)
                        sampler.reset()
                        r = await bench.phase(conn, session, action, measured, one)
                        r["generation"] = generation
                        r["connections"] = {k: dict(v) for k, v in sorted(sampler.peak.items())}
                        r["samples"] = sampler.samples
                        results.append(r)
                    info["max_connections"] = await conn.fetchval("SHOW max_connections")
                    info["github_problems"] = github.problems()
                    info["github_calls"] = len(github.calls())
            finally:
                await sampler.stop()
                await conn.close()
                for g in bench.replicas:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(g.stop, 30)
                info["errors"] = {g.workdir.name: g.log_count(" ERROR ") for g in bench.replicas}
    finally:
        await asyncio.to_thread(server.stop)
        info["leftovers"] = kill_leftovers(root)
    return results, info


def report(args: argparse.Namespace, results: list[dict], info: dict) -> None:
    n, s = args.replicas, args.slots
    print(
        f"\n### {n} replicas x {s} slots, {args.prs} PRs over {args.repos} repositories, apply = 2 x sleep "
        f"{args.delay:g} s in parallel\n"
    )
    print(
        f"replicas ready in {info['ready_s']:.1f} s; one apply alone (delivery -> active, median of "
        f"{len(info['singles'])}: {', '.join(f'{x:.2f}' for x in info['singles'])}) = "
        f"**{results[0]['one_apply_s']:.2f} s** (the Terraform run {info['one_run_s']:.2f} s)\n"
    )
    rows = []
    for r in results:
        ratio = r["total_s"] / r["ideal_s"]
        rows.append(
            [
                f"{r['generation']} ({r['action']})",
                f"{r['posted_s']:.2f}",
                f"ceil({r['prs']}/{n * s}) x {r['one_apply_s']:.2f} = {r['ideal_s']:.2f}",
                f"{r['total_s']:.2f} ({r['observed_s']:.2f})",
                f"**{ratio:.3f}**",
                "yes" if ratio <= 1.10 else "**no**",
                fmt_counter(r["runs_per_env"]),
                fmt_counter(r["tf_applies_per_env"]),
                str(sum(r["not_succeeded"].values())) + (f" {dict(r['not_succeeded'])}" if r["not_succeeded"] else ""),
                f"{statistics.median(r['run_s']):.2f} / {max(r['run_s']):.2f}",
                f"{statistics.median(r['wait_s'] or [0]):.2f} / {max(r['wait_s'] or [0]):.2f}",
                f"{r['in_flight']['all']} / {n * s}",
                ", ".join(f"{v}" for k, v in r["in_flight"].items() if k != "all"),
                " ".join(r["loadavg"]),
            ]
        )
    print(
        table(
            [
                "generation",
                "POSTs s",
                "ideal s",
                "measured s (client)",
                "ratio",
                "<= 1.10",
                "apply runs per env",
                "`terraform apply` per env",
                "runs not succeeded",
                "run s (med / max)",
                "slot hand-over s (med / max)",
                "max in flight / slots",
                "max in flight per replica",
                "load average after",
            ],
            rows,
        )
    )
    print()
    rows = []
    for r in results:
        for name, peak in r["connections"].items():
            rows.append(
                [
                    r["generation"],
                    name,
                    peak.get("total", 0),
                    peak.get("pool", 0),
                    peak.get("listen", 0),
                    peak.get("state", 0),
                    sum(1 for x in r["runs"] if x["replica"] == name.removeprefix("ghapp-")),
                    f"{r['cpu'].get(name.removeprefix('ghapp-') + '_main_cpu_pct', 0):.0f}",
                ]
            )
    print(
        table(
            [
                "generation",
                "replica",
                "peak connections",
                "pool",
                "LISTEN",
                "state role (Terraform)",
                "runs",
                "serve CPU %",
            ],
            rows,
        )
    )
    formula = max(10, 2 * s + 4) + 3 + s
    for r in results:
        peaks = [p.get("total", 0) for p in r["connections"].values()]
        print(
            f"\ngeneration {r['generation']}: peak per replica {max(peaks)} (documented bound "
            f"max(10, 2R+4) + 3 + R = {formula}), sum of the replicas' peaks {sum(peaks)} ({r['samples']} samples); "
            f"duplicate apply runs of one (environment, generation): {r['max_runs_per_env_generation'] - 1}; "
            f"`terraform apply` of other workspaces {r['tf_applies_other']}, with a wrong SHA {len(r['wrong_sha'])}; "
            f"runs of other environments {len(r['other_runs'])}; machine CPU {r['cpu']['machine_busy_pct']:.0f} % "
            f"of {100 * (os.cpu_count() or 1)} %"
        )
    print(
        f"\nPostgreSQL max_connections {info['max_connections']}; warm-up peaks {info['warmup_peak']}; "
        f"fake GitHub: {info['github_calls']} calls, problems {info['github_problems'] or 'none'}; "
        f"ERROR lines per replica log {info['errors']}; leftover processes {len(info['leftovers'])}"
    )


def fmt_counter(c: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))


async def main(args: argparse.Namespace) -> int:
    facts = machine_facts()
    print_facts(facts)
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    root = Path(tempfile.mkdtemp(prefix="ghapp-replicas-"))
    root.chmod(0o755)
    failed = False
    try:
        results, info = await run(args, root)
        report(args, results, info)
    except BaseException:
        failed = True
        for d in sorted(root.glob("r*/ghapp.log")):
            print(f"--- {d.parent.name} log tail:\n" + "\n".join(d.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        if args.keep or failed:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--slots", type=int, default=4, help="GHAPP_MAX_PARALLEL_RUNS per replica")
    p.add_argument("--prs", type=int, default=200)
    p.add_argument("--repos", type=int, default=10)
    p.add_argument("--delay", type=float, default=10, help="TF_VAR_delay: apply = 2 x sleep in parallel")
    p.add_argument("--singles", type=int, default=3)
    p.add_argument("--validate-github", action="store_true", help="the fake GitHub validates every call (slow)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    return p.parse_args()


if __name__ == "__main__":

    def _term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    sys.exit(asyncio.run(main(parse_args())))
