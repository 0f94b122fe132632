"""Benchmark: ghapp at scale (issue 4, item 10). Run by hand; prints Markdown tables.

  python -m bench.scale                       # all three, about 6 minutes
  python -m bench.scale --only 2 --delay 20   # one benchmark, a longer apply
  python -m bench.scale --profile DIR         # also py-spy the serve process during benchmark 2's burst
  python -m bench.scale --environments 10000 --only 1,3,4 --variants converged   # 10,000 (issue 13), ~6 minutes

Every `ghapp serve` here is a child process (bench/_common.GhappServe): its own GHAPP_DATA_DIR in a temp dir (so
its own embedded PostgreSQL), offline (no GITHUB_APP_ID), GITHUB_WEBHOOK_SECRET set, GHAPP_MAX_PARALLEL_RUNS=8,
GHAPP_TERRAFORM_MODULE=tests/modules/scripted (apply = two parallel `terraform_data` local-exec steps that sleep
TF_VAR_delay seconds: a fixed-duration apply) and GHAPP_TERRAFORM_BIN = a wrapper script that appends each
invocation's argv to a file, then execs `terraform` from PATH (else the bundled ghapp-terraform).

--environments N (default 1,000) sets the number of environments of benchmarks 1 and 3 (written 1,000 below).

1. Memory with 1,000 environments tracked and 8 runs in flight (TF_VAR_delay = --hold, so runs stay in flight).
   a) "converged": 992 converged (active) rows inserted directly in the database, then 8 PRs opened by signed
      deliveries. The realistic steady state, and quick: converging 992 environments through real applies would
      take ~10 minutes of both cores and exercise Terraform, not the app's memory; the app keeps no per-environment
      state in memory, so a row inserted is tracked exactly like a row applied.
   b) "all delivered": 1,000 PRs opened by signed deliveries (20 concurrent POSTs): 8 runs, 992 queued, and the
      publisher renders 1,000 fresh states. Everything through the real intake path.
   RSS of the serve process (/proc/PID/status VmRSS, peak VmHWM) sampled every 0.25 s; Terraform processes and
   PostgreSQL (PSS, shared buffers counted once) separately. The API is paged over all 1,000 environments and the
   dashboard fetched while runs are in flight. Target: serve VmHWM <= 150 MB. Then, still with 8 runs in flight,
   --requests sequential GETs over one keep-alive connection (after 3 warm-ups) of each dashboard and API page
   (first page, a page in the middle, /metrics): p50 / p95 / max. Target: p95 <= 150 ms.
2. Burst: one apply alone first (a warm-up PR that does `terraform init`, then --singles PRs one at a time,
   median from delivery to `active`), then --burst PRs opened at once; time from the first delivery to the last
   `active` vs ceil(burst / 8) x one apply. Times come from the database (environments.created_at at intake,
   runs.finished_at when the run is recorded: PostgreSQL's clock, one machine). Target: ratio <= 1.10.
3. Restart: 1,000 converged environments (benchmark 2's real ones plus converged rows inserted directly), then
   the serve process is stopped (SIGINT, graceful) and started again on the same data dir; after 3 x
   GHAPP_POLL_INTERVAL (plus 2 s), count rows in `runs` and Terraform invocations; then the same after a SIGKILL.
   Target: 0 runs, 0 Terraform invocations; "ready s" is from starting the process (embedded PostgreSQL included)
   to /readyz answering 200 (target <= 5 s).
4. Database size per environment-month with GHAPP_RETENTION (its own database on a serve's PostgreSQL, which no
   ghapp process touches): --sample environments get two months of history written directly (rows as ghapp writes
   them; the activity a month is in --help: pushes, sleep/wake cycles, log lines, deliveries, commands), timestamps
   spread over the last 60 days; pg_total_relation_size per table (indexes and TOAST included) before, then after
   ghapp's own retention.prune at --retention days and VACUUM FULL (the live data: without FULL, PostgreSQL keeps
   the freed pages for reuse, which is the steady state's size plus bloat).
Every process started (serve, PostgreSQL, Terraform and its provisioners) is stopped at the end, even on failure:
the leftover check finds any process whose environment carries this run's GHAPP_DATA_DIR and kills it by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from bench._common import (
    SCRIPTED_MODULE,
    CpuMeter,
    GhappServe,
    Payload,
    bundled_terraform,
    busy_others,
    fake_sha,
    machine_facts,
    percentile,
    print_facts,
    table,
    wait_quiet,
)
from bench.dashboard import timed_gets
from ghapp import db as ghapp_db
from ghapp.core.contract import environment_name
from ghapp.db import retention

PARALLEL = 8
RSS_TARGET_MB = 150.0
RATIO_TARGET = 1.10
PAGE_TARGET_MS = 150.0
READY_TARGET_S = 5.0
OPENED = Payload("pull_request.opened")


# --- processes ------------------------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem of a live process in kB ({} if gone)."""
    text = _read(f"/proc/{pid}/status") or ""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out


def pss_kb(pid: int) -> int:
    text = _read(f"/proc/{pid}/smaps_rollup") or ""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, comm) of every live descendant of `root`, zombies excluded."""
    parent: dict[int, int] = {}
    comm: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        if fields[0] in ("Z", "X"):
            continue
        parent[int(entry)] = int(fields[1])
        comm[int(entry)] = head.partition("(")[2]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append((pid, comm[pid]))
        todo.extend(children.get(pid, ()))
    return found


def ours(root: Path) -> list[int]:
    """Live processes started for this benchmark: their environment carries GHAPP_DATA_DIR under `root` (serve,
    PostgreSQL, Terraform, provisioners all inherit it) or their working directory is under `root`."""
    needle = f"GHAPP_DATA_DIR={root}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state in (b"Z", b"X"):
            continue
        if any(v.startswith(needle) for v in environ.split(b"\0")) or cwd == str(root) or cwd.startswith(f"{root}/"):
            found.append(int(entry))
    return found


def kill_leftovers(root: Path) -> list[str]:
    """SIGINT (PostgreSQL's fast shutdown, Terraform's graceful stop), then SIGKILL, by pid."""
    reported = []
    for sig, pause in ((signal.SIGINT, 3.0), (signal.SIGKILL, 1.0)):
        pids = ours(root)
        if not pids:
            break
        for pid in pids:
            reported.append(f"{pid} {(_read(f'/proc/{pid}/cmdline') or '').replace(chr(0), ' ')[:80]} ({sig.name})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(pause)
    return reported


class Sampler:
    """Samples the serve process (VmRSS/VmHWM), its Terraform processes and PostgreSQL every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.25):
        self.pid, self.every = pid, every
        self.samples: list[dict] = []
        self._task: asyncio.Task | None = None

    def sample(self) -> dict:
        st = status_kb(self.pid)
        kids = descendants(self.pid)
        tf = [p for p, c in kids if c.startswith("terraform")]
        pg = [p for p, c in kids if c == "postgres"]
        other = [p for p, c in kids if not c.startswith("terraform") and c != "postgres"]
        s = {
            "t": time.monotonic(),
            "rss": st.get("VmRSS", 0),
            "hwm": st.get("VmHWM", 0),
            "anon": st.get("RssAnon", 0),
            "file": st.get("RssFile", 0),
            "tf_n": len(tf),
            "tf_rss": sum(status_kb(p).get("VmRSS", 0) for p in tf),
            "pg_n": len(pg),
            "pg_pss": sum(pss_kb(p) for p in pg),
            "other_n": len(other),
            "other_rss": sum(status_kb(p).get("VmRSS", 0) for p in other),
        }
        self.samples.append(s)
        return s

    async def _loop(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.every)

    def start(self) -> Sampler:
        self._task = asyncio.create_task(self._loop())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def window(self, t0: float, t1: float | None = None) -> list[dict]:
        return [s for s in self.samples if s["t"] >= t0 and (t1 is None or s["t"] <= t1)]


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def page_paths(environments: int, middle: int) -> list[tuple[str, str]]:
    """(label, path) of the pages an operator opens: each list's first page and one in the middle of the ids."""
    return [
        ("/healthz (no database: the floor)", "/healthz"),
        ("dashboard: first page (200 newest)", "/"),
        ("dashboard: a page in the middle (`before`)", f"/?before={middle}"),
        ("dashboard: 1,000 rows on one page", "/?limit=1000"),
        ("API: first page (100)", "/api/environments"),
        ("API: a page in the middle (`after`)", f"/api/environments?after={middle}"),
        ("API: 500 on one page", "/api/environments?limit=500"),
        ("/metrics (counts over all environments)", "/metrics"),
    ]


# Benchmark 4: two months of history per sampled environment, as ghapp writes it (runs, their logs, deliveries,
# commands), times spread evenly over the last 60 days. Arguments: the sample size; pushes and sleep/wake cycles a
# month (a push is one apply, a cycle two); log lines of a push's apply and of a sleep's or wake's, pushes, cycles;
# deliveries a month; commands a month.
HISTORY = [
    """
INSERT INTO environments (repo_id, repository, pr_number, name, installation_id, head_ref, author, title, pr_url,
                          desired, desired_sha, head_sha, generation, observed_generation, status, provisioned,
                          deployed_sha, preview_url, expires_at)
SELECT 1000 + g % 20, 'acme/service-' || g % 20, g, 'pr-' || g || '-service-' || g % 20, 7, 'feature/change-' || g,
       'developer' || g % 37, 'Change ' || g || ': make the thing better', 'https://github.com/acme/service-'
       || g % 20 || '/pull/' || g, 'present', sha, sha, 1, 1, 'active', true, sha,
       'https://pr-' || g || '.preview.example.com/', now() + interval '72 hours'
FROM (SELECT g, md5(g::text) || left(md5('s' || g), 8) AS sha FROM generate_series(1, $1::int) g) s
""",
    """
INSERT INTO runs (environment_id, action, sha, generation, owner, state, started_at, finished_at, exit_code)
SELECT e.id, 'apply', e.desired_sha, k, 'worker-1a2b3c', 'succeeded',
       now() - make_interval(secs => (60 * 86400.0 * k / (2 * ($1 + 2 * $2)))::int + 45),
       now() - make_interval(secs => (60 * 86400.0 * k / (2 * ($1 + 2 * $2)))::int), 0
FROM environments e, generate_series(1, 2 * ($1::int + 2 * $2::int)) k
""",
    # a push's apply logs $1 lines, a sleep's or a wake's $2; of every $3 + 2 x $4 runs, $3 are pushes
    """
INSERT INTO run_logs (run_id, seq, at, line, source)
SELECT r.id, s, r.started_at + make_interval(secs => s * 0.2),
       CASE WHEN s % 4 = 0 THEN 'terraform_data.app[0]: Still creating... [' || s || 's elapsed]'
            WHEN s % 4 = 1 THEN 'terraform_data.app[0] (local-exec): Executing: ["/bin/sh" "-c" "deploy --ref ' ||
                                r.sha || '"]'
            WHEN s % 4 = 2 THEN 'Plan: 2 to add, 0 to change, 2 to destroy.'
            ELSE 'Apply complete! Resources: 2 added, 0 changed, 2 destroyed.' END,
       CASE WHEN s % 4 = 1 THEN 'provisioner' ELSE 'terraform' END
FROM runs r, generate_series(1, greatest($1::int, $2::int)) s
WHERE s <= CASE WHEN r.generation % ($3::int + 2 * $4::int) < $3 THEN $1 ELSE $2 END
""",
    """
INSERT INTO deliveries (id, event, received_at)
SELECT gen_random_uuid()::text,
       (ARRAY['pull_request', 'check_suite', 'check_run', 'status', 'issue_comment'])[1 + k % 5],
       now() - make_interval(secs => (60 * 86400.0 * k / (2 * $1))::int)
FROM environments e, generate_series(1, 2 * $1::int) k
""",
    """
INSERT INTO commands (source, command, installation_id, repo_id, repository, pr_number, comment_id, author,
                      created_at, next_attempt_at, attempts, done_at, outcome, steps)
SELECT 'comment', (ARRAY['deploy', 'redeploy', 'keep', 'help'])[1 + k % 4], 7, e.repo_id, e.repository, e.pr_number,
       e.id * 1000 + k, e.author, now() - make_interval(secs => (60 * 86400.0 * k / (2 * $1))::int),
       now() - make_interval(secs => (60 * 86400.0 * k / (2 * $1))::int), 1,
       now() - make_interval(secs => (60 * 86400.0 * k / (2 * $1))::int), 'done',
       '{"reaction": true, "reply": 123456789}'
FROM environments e, generate_series(1, 2 * $1::int) k
""",
]
SIZED = ("environments", "runs", "run_logs", "deliveries", "commands")


# --- ghapp ----------------------------------------------------------------------------------------------------------


def write_wrapper(path: Path, log: Path) -> str:
    """A GHAPP_TERRAFORM_BIN that logs each invocation, then execs the real Terraform."""
    real = shutil.which("terraform") or bundled_terraform()
    if not real:
        raise SystemExit("no terraform on PATH and no ghapp-terraform: pip install -e . first")
    path.write_text(
        f'#!/bin/sh\nprintf \'%s %s %s\\n\' "$(date +%s.%N)" "${{TF_WORKSPACE:--}}" "$*" >> "{log}"\n'
        f'exec "{real}" "$@"\n'
    )
    path.chmod(0o755)
    return real


def invocations(log: Path) -> list[tuple[float, str, str]]:
    """(wall-clock time, TF_WORKSPACE or '-', argv) of every Terraform invocation so far."""
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        t, ws, argv = (line.split(" ", 2) + ["", ""])[:3]
        out.append((float(t), ws, argv))
    return out


def phases(rows: list[dict], calls: list[tuple[float, str, str]], names: dict[int, str]) -> list[dict]:
    """Per apply run, seconds from its environment's delivery (created_at): `started` (claimed, run recorded),
    `ws_new` (`terraform workspace new` invoked), `apply` (`terraform apply` invoked), `done` (outcome recorded)."""
    out = []
    for r in rows:
        t0 = r["created_at"].timestamp()
        name = names[r["id"]]
        # the log is shared by every server of this benchmark (and names repeat across data dirs): this run's own
        mine = [(t, w, a) for t, w, a in calls if t >= t0 - 0.5]
        ws = next((t for t, w, a in mine if a.startswith("workspace new") and a.endswith(" " + name)), None)
        ap = next((t for t, w, a in mine if a.startswith("apply") and w == name), None)
        out.append(
            {
                "id": r["id"],
                "created": t0,
                "started": r["started_at"].timestamp() - t0,
                "ws_new": ws - t0 if ws else None,
                "apply": ap - t0 if ap else None,
                "done": r["finished_at"].timestamp() - t0,
            }
        )
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path):
        self.args = args
        self.root = root
        self.tf_log = root / "terraform-invocations.log"
        self.wrapper = root / "terraform-wrapper.sh"
        self.real_tf = write_wrapper(self.wrapper, self.tf_log)
        self.servers: list[GhappServe] = []

    def serve(self, name: str, data_dir: Path | None = None, **settings: str) -> GhappServe:
        base = {
            "GHAPP_MAX_PARALLEL_RUNS": str(PARALLEL),
            "GHAPP_TERRAFORM_MODULE": str(SCRIPTED_MODULE),
            "GHAPP_TERRAFORM_BIN": str(self.wrapper),
            "GHAPP_SHUTDOWN_GRACE": "2s",
        }
        base.update(settings)
        g = GhappServe(self.root / name, data_dir=data_dir, **base)
        # every process of this benchmark carries GHAPP_DATA_DIR under self.root (the leftover check relies on it)
        assert str(g.data_dir).startswith(str(self.root))
        self.servers.append(g)
        t0 = time.perf_counter()
        g.start()
        g.ready_s = time.perf_counter() - t0
        return g

    @staticmethod
    async def db(g: GhappServe) -> asyncpg.Connection:
        url = g.database_url()
        if not url:
            raise RuntimeError(f"no embedded PostgreSQL running for {g.data_dir}")
        return await asyncpg.connect(url)

    @staticmethod
    async def deliver(session: aiohttp.ClientSession, g: GhappServe, number: int, sha: str | None = None) -> int:
        body = OPENED.body(number, sha or fake_sha("scale", number, uuid.uuid4()))
        async with session.post(g.url + "/webhooks", data=body, headers=OPENED.headers(body, str(uuid.uuid4()))) as r:
            reply = await r.json()
            if r.status != 202:
                raise RuntimeError(f"PR #{number}: {r.status} {reply}")
            return reply["environment_id"]

    @staticmethod
    async def insert_converged(conn: asyncpg.Connection, first_pr: int, count: int) -> list[int]:
        """`count` environments as a finished apply leaves them: desired present, generation = observed, active,
        deployed, published (so neither the reconciler nor the publisher has anything to do for them)."""
        rows = await conn.fetch(
            """INSERT INTO environments (repo_id, repository, pr_number, installation_id, head_ref, author, title,
                   pr_url, desired, desired_sha, head_sha, generation, observed_generation, status, provisioned,
                   deployed_sha, preview_url, outputs, expires_at)
               SELECT $1, $2, n, 1, 'scale-' || n, 'Codertocat', 'Scale benchmark #' || n,
                      'https://github.com/' || $2 || '/pull/' || n, 'present', sha, sha, 1, 1, 'active', true, sha,
                      'http://pr-' || n || '.preview.test/', jsonb_build_object('sha', sha),
                      now() + interval '72 hours'
               FROM (SELECT n, md5(n::text) || left(md5('s' || n), 8) AS sha
                     FROM generate_series($3::int, $4::int) n) s
               RETURNING id, pr_number""",
            OPENED.repo_id,
            OPENED.repository,
            first_pr,
            first_pr + count - 1,
        )
        await conn.executemany(
            "UPDATE environments SET name = $2 WHERE id = $1",
            [(r["id"], environment_name(r["id"], OPENED.repository, r["pr_number"])) for r in rows],
        )
        ids = [r["id"] for r in rows]
        # published_version changes, so the version trigger does not fire: nothing left to publish
        await conn.execute(
            """UPDATE environments SET published_version = version,
                                  published = '{"check_run": "bench", "comment": "bench"}' WHERE id = ANY($1)""",
            ids,
        )
        return ids

    @staticmethod
    async def wait_running(conn: asyncpg.Connection, n: int, timeout: float) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'running'") >= n:
                return time.perf_counter() - t0
            await asyncio.sleep(0.1)
        raise RuntimeError(f"fewer than {n} runs in flight after {timeout}s")

    # --- 1 ------------------------------------------------------------------------------------------------------------

    async def memory(self, variant: str, n: int) -> dict:
        a = self.args
        g = self.serve(f"mem-{variant}-{n}", TF_VAR_delay=str(a.hold))
        sampler = Sampler(g.proc.pid).start()
        out: dict = {"variant": variant, "ready_s": g.ready_s}
        conn = await self.db(g)
        try:
            await asyncio.sleep(2.0)
            out["idle"] = sampler.sample()
            async with aiohttp.ClientSession() as session:
                t0 = time.perf_counter()
                if variant == "converged":
                    await self.insert_converged(conn, 10_001, n - PARALLEL)
                    await conn.execute("VACUUM ANALYZE environments")  # what autovacuum does within a minute
                    for i in range(PARALLEL):
                        await self.deliver(session, g, 1 + i)
                else:
                    gate = asyncio.Semaphore(20)

                    async def one(n: int) -> int:
                        async with gate:
                            return await self.deliver(session, g, n)

                    await asyncio.gather(*(one(i) for i in range(1, n + 1)))
                out["create_s"] = time.perf_counter() - t0
                out["to_8_running_s"] = await self.wait_running(conn, PARALLEL, 120)
                out["tracked"] = await conn.fetchval("SELECT count(*) FROM environments")
                out["by_status"] = dict(await conn.fetch("SELECT status, count(*) FROM environments GROUP BY 1"))
                # the 8 Terraform processes (apply) must be alive, not just the runs recorded
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    s = sampler.sample()
                    if s["tf_n"] >= PARALLEL:
                        break
                    await asyncio.sleep(0.2)
                t_steady = time.monotonic()
                await asyncio.sleep(a.steady)
                out["steady"] = sampler.window(t_steady)
                # an operator's pages, each timed over HTTP, while the 8 runs are in flight
                middle = await conn.fetchval("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM environments")
                t_pages = time.monotonic()
                out["pages"] = []
                for label, path in page_paths(n, middle):
                    meter = CpuMeter(ghapp=g.proc.pid).start()
                    times, size = await asyncio.to_thread(timed_gets, g.port, path, a.requests)
                    cpu = meter.stop()
                    per_request = cpu["wall_s"] * 1000 / (a.requests + 3)  # timed_gets makes 3 warm-ups first
                    out["pages"].append(
                        (
                            label,
                            times,
                            size,
                            cpu["ghapp_main_cpu_pct"] / 100 * per_request,
                            cpu["ghapp_cpu_pct"] / 100 * per_request,
                            cpu["machine_busy_pct"],
                        )
                    )
                out["during_pages"] = sampler.window(t_pages)
                # an operator looks: page through all environments (API) and open the dashboard
                t_api = time.monotonic()
                url, pages = g.url + "/api/environments?limit=500", 0
                while url:
                    async with session.get(url) as r:
                        body = await r.json()
                    pages += 1
                    nxt = body.get("next")
                    url = (nxt if nxt.startswith("http") else g.url + nxt) if nxt else None
                async with session.get(g.url + "/") as r:
                    out["dashboard"] = (r.status, len(await r.read()))
                await asyncio.sleep(2.0)
                out["api_pages"] = pages
                out["after_api"] = sampler.window(t_api)
                out["running_at_end"] = await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'running'")
                out["final"] = sampler.sample()
        finally:
            await conn.close()
            await sampler.stop()
            g.stop()
        return out

    # --- 2 ------------------------------------------------------------------------------------------------------------

    async def burst(self) -> tuple[dict, GhappServe]:
        a = self.args
        g = self.serve("burst", TF_VAR_delay=str(a.delay))
        conn = await self.db(g)
        out: dict = {}
        profiler = None
        try:
            async with aiohttp.ClientSession() as session:

                async def timed(ids: list[int]) -> list[dict]:
                    while True:
                        rows = await conn.fetch(
                            """SELECT e.id, e.name, e.status, e.created_at, r.started_at, r.finished_at
                               FROM environments e JOIN runs r ON r.environment_id = e.id AND r.action = 'apply'
                               WHERE e.id = ANY($1) ORDER BY r.started_at""",
                            ids,
                        )
                        if any(r["status"] == "failed" for r in rows):
                            raise RuntimeError(f"a run failed:\n{g.log_tail()}")
                        if len(rows) == len(ids) and all(r["status"] == "active" for r in rows):
                            return [dict(r) for r in rows]
                        await asyncio.sleep(0.1)

                # warm-up: `terraform init` happens on the first run
                w = await asyncio.wait_for(timed([await self.deliver(session, g, 1)]), 120)
                out["warmup_s"] = (w[0]["finished_at"] - w[0]["created_at"]).total_seconds()
                singles = []
                for i in range(a.singles):
                    singles += await asyncio.wait_for(timed([await self.deliver(session, g, 2 + i)]), 120)
                one = statistics.median((r["finished_at"] - r["created_at"]).total_seconds() for r in singles)
                out["singles"] = singles
                out["one_apply_s"] = one
                out["one_run_s"] = statistics.median(
                    (r["finished_at"] - r["started_at"]).total_seconds() for r in singles
                )
                names = dict(await conn.fetch("SELECT id, name FROM environments"))
                out["single_phases"] = phases(singles, invocations(self.tf_log), names)
                waited, busy = wait_quiet(30.0, a.quiet_wait)
                out["quiet"] = (waited, busy)
                out["busy_others"] = busy_others(1.0, exclude=set(ours(self.root)))
                tf_before = len(invocations(self.tf_log))
                if a.profile:
                    a.profile.mkdir(parents=True, exist_ok=True)
                    expected = math.ceil(a.burst / PARALLEL) * one
                    profiler = subprocess.Popen(  # noqa: ASYNC220 - started once, not waited on here
                        [
                            "py-spy",
                            "record",
                            "-p",
                            str(g.proc.pid),
                            "-d",
                            str(int(expected * 1.5) + 5),
                            "-r",
                            "50",
                            "-f",
                            "raw",
                            "-o",
                            str(a.profile / "burst.txt"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                meter = CpuMeter(ghapp=g.proc.pid).start()
                wall0 = time.perf_counter()
                numbers = range(1000, 1000 + a.burst)
                ids = await asyncio.gather(*(self.deliver(session, g, n) for n in numbers))
                out["posted_s"] = time.perf_counter() - wall0
                rows = await asyncio.wait_for(timed(list(ids)), 30 * a.burst * one / PARALLEL + 120)
                out["observed_s"] = time.perf_counter() - wall0
                out["cpu"] = meter.stop()
                out["tf_calls"] = invocations(self.tf_log)[tf_before:]
                names = dict(await conn.fetch("SELECT id, name FROM environments"))
                out["burst_phases"] = phases(rows, out["tf_calls"], names)
                first = min(r["created_at"] for r in rows)
                out["total_s"] = (max(r["finished_at"] for r in rows) - first).total_seconds()
                out["expected_s"] = math.ceil(a.burst / PARALLEL) * one
                out["ratio"] = out["total_s"] / out["expected_s"]
                out["max_running"] = await conn.fetchval(
                    """SELECT max(c) FROM (SELECT (SELECT count(*) FROM runs r2 WHERE r2.started_at <= r.started_at
                              AND (r2.finished_at IS NULL OR r2.finished_at > r.started_at)) AS c FROM runs r) x"""
                )
        finally:
            if profiler is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    profiler.wait(10)
                if profiler.poll() is None:
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait(10)
            await conn.close()
        return out, g

    # --- 3 ------------------------------------------------------------------------------------------------------------

    async def restart(self, g: GhappServe | None, total: int) -> dict:
        """On benchmark 2's server (or a fresh one): top up to `total` converged environments, then restart twice."""
        a = self.args
        if g is None or g.proc.poll() is not None:
            g = self.serve(f"restart-{total}", TF_VAR_delay="0")
        out: dict = {}
        conn = await self.db(g)
        try:
            real = await conn.fetchval("SELECT count(*) FROM environments")
            await self.insert_converged(conn, 20_001, total - real)
            await conn.execute("VACUUM ANALYZE environments")
            out["real"], out["inserted"] = real, total - real
            out["before"] = await self.counts(conn)
        finally:
            await conn.close()
        if out["before"]["unconverged"]:
            raise RuntimeError(f"not converged before the restart: {out['before']}")
        wait = 3 * a.poll + 2
        out["steps"] = []
        for how in ("graceful (SIGINT)", "crash (SIGKILL)"):
            if how.startswith("crash"):
                g.proc.kill()
                g.proc.wait()
            else:
                g.stop()
            # the embedded PostgreSQL stops with its parent (at once on SIGINT; by PDEATHSIG after SIGKILL)
            deadline = time.monotonic() + 30
            while g.database_url() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            tf0 = len(invocations(self.tf_log))
            log0 = len(g.log_path.read_text(errors="replace").splitlines())
            t0 = time.perf_counter()
            g.start()
            ready = time.perf_counter() - t0
            await asyncio.sleep(wait)
            conn = await self.db(g)
            try:
                after = await self.counts(conn)
            finally:
                await conn.close()
            out["steps"].append(
                {
                    "how": how,
                    "ready_s": ready,
                    "waited_s": wait,
                    "after": after,
                    "tf_calls": [a for _t, _w, a in invocations(self.tf_log)[tf0:]],
                    "published": [
                        x.split(": ", 1)[-1][:90]
                        for x in g.log_path.read_text(errors="replace").splitlines()[log0:]
                        if "check run" in x
                    ],
                    "rss": status_kb(g.proc.pid),
                }
            )
        g.stop()
        return out

    # --- 4 ------------------------------------------------------------------------------------------------------------

    async def size(self) -> dict:
        """Two months of history for --sample environments in a database of its own, measured before and after the
        retention at --retention days."""
        a = self.args
        g = self.serve("size", TF_VAR_delay="0")
        url = g.database_url()
        assert url
        admin = await asyncpg.connect(url)
        try:
            await admin.execute("CREATE DATABASE sizing")
        finally:
            await admin.close()
        sizing_url = url.replace("/postgres?", "/sizing?")  # the serve's own database is `postgres`
        assert sizing_url != url, url
        pool = await asyncpg.create_pool(sizing_url, min_size=1, max_size=2)
        out: dict = {"sample": a.sample}
        try:
            await ghapp_db.migrate(pool)
            async with pool.acquire() as conn:
                out["empty"] = await self.sizes(conn)
                t0 = time.perf_counter()
                envs, runs_, logs, deliveries, commands = HISTORY
                await conn.execute(envs, a.sample)
                await conn.execute(runs_, a.pushes, a.sleep_cycles)
                await conn.execute(logs, a.push_lines, a.sleep_lines, a.pushes, a.sleep_cycles)
                await conn.execute(deliveries, a.deliveries)
                await conn.execute(commands, a.commands)
                out["generate_s"] = time.perf_counter() - t0
                await conn.execute("VACUUM ANALYZE")
                out["two_months"] = await self.sizes(conn)
            out["pruned"] = await retention.prune(pool, a.retention * 86400.0, pause=0)
            async with pool.acquire() as conn:
                await conn.execute("VACUUM")
                out["after_prune"] = await self.sizes(conn)
                await conn.execute("VACUUM FULL")
                out["after_prune_full"] = await self.sizes(conn)
        finally:
            await pool.close()
            g.stop()
        return out

    @staticmethod
    async def sizes(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
        """table -> (rows, pg_total_relation_size in bytes: heap, indexes and TOAST)."""
        found = {}
        for name in SIZED:
            found[name] = (
                await conn.fetchval(f"SELECT count(*) FROM {name}"),
                await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", name),
            )
        return found

    @staticmethod
    async def counts(conn: asyncpg.Connection) -> dict:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM environments) AS environments,
                      (SELECT count(*) FROM environments WHERE status = 'active') AS active,
                      (SELECT count(*) FROM environments WHERE generation > observed_generation) AS unconverged,
                      (SELECT count(*) FROM environments WHERE version > published_version) AS unpublished,
                      (SELECT count(*) FROM runs) AS runs,
                      pg_total_relation_size('environments') AS environments_bytes"""
        )
        return dict(row)


# --- reports -------------------------------------------------------------------------------------------------------


def report_memory(results: list[dict]) -> None:
    print("\n### 1. Memory: environments tracked, 8 runs in flight\n")
    rows = []
    for r in results:
        steady = r["steady"] + r["during_pages"] + r["after_api"]
        serve_rss = [s["rss"] for s in steady]
        hwm = max(s["hwm"] for s in [*steady, r["final"]])
        rows.append(
            [
                r["variant"],
                r["tracked"],
                f"{r['create_s']:.1f}",
                f"{min(s['tf_n'] for s in steady)}-{max(s['tf_n'] for s in steady)}",
                mb(r["idle"]["rss"]),
                mb(statistics.median(serve_rss)),
                mb(max(serve_rss)),
                mb(r["final"]["rss"]),
                mb(hwm),
                "yes" if hwm / 1024 <= RSS_TARGET_MB else "**no**",
                mb(max(s["tf_rss"] for s in steady)),
                mb(max(s["pg_pss"] for s in steady)),
            ]
        )
    print(
        table(
            [
                "variant",
                "envs",
                "create s",
                "terraform procs",
                "serve RSS idle MB",
                "RSS 8 running (median) MB",
                "max MB",
                "after API+dashboard MB",
                "VmHWM MB",
                f"<= {RSS_TARGET_MB:.0f} MB",
                "Terraform RSS (sum) MB",
                "PostgreSQL PSS MB",
            ],
            rows,
        )
    )
    for r in results:
        st = r["final"]
        print(
            f"\n{r['variant']}: statuses {r['by_status']}; 8 running {r['to_8_running_s']:.1f}s after the last "
            f"delivery; API pages {r['api_pages']}, dashboard {r['dashboard']}; runs in flight at the end "
            f"{r['running_at_end']}; serve RssAnon {mb(st['anon'])} MB, RssFile {mb(st['file'])} MB; "
            f"ready in {r['ready_s']:.1f}s"
        )


def report_pages(results: list[dict]) -> None:
    print("\nPages over HTTP with 8 runs in flight (ms; sequential GETs on one keep-alive connection):\n")
    rows = []
    smallest = {}
    for r in sorted(results, key=lambda r: r["tracked"]):
        smallest.setdefault(r["variant"], {label: percentile(t, 50) for label, t, *_ in r["pages"]})
    for r in results:
        for label, times, size, cpu_main, cpu_tree, busy in r["pages"]:
            p95 = percentile(times, 95)
            rows.append(
                [
                    r["variant"],
                    f"{r['tracked']:,}",
                    label,
                    len(times),
                    f"{percentile(times, 50):.1f}",
                    f"**{p95:.1f}**",
                    f"{max(times):.1f}",
                    f"{size / 1024:.0f} KiB",
                    "yes" if p95 <= PAGE_TARGET_MS else "**no**",
                    f"{percentile(times, 50) / smallest[r['variant']][label]:.2f}",
                    f"{cpu_main:.1f}",
                    f"{cpu_tree:.1f}",
                    f"{busy:.0f} %",
                ]
            )
    headers = ["variant", "envs", "page", "n", "p50", "p95", "max", "body", f"p95 <= {PAGE_TARGET_MS:.0f} ms"]
    cpu = ["serve CPU ms per request", "+ PostgreSQL (tree)", "machine busy (of 200 %)"]
    print(table([*headers, "p50 / p50 with the fewest envs", *cpu], rows))


def report_size(r: dict, a: argparse.Namespace) -> None:
    runs_month = a.pushes + 2 * a.sleep_cycles
    lines_month = a.pushes * a.push_lines + 2 * a.sleep_cycles * a.sleep_lines
    print(
        f"\n### 4. Database size per environment-month ({r['sample']} environments, two months of history each: per "
        f"month {a.pushes} pushes x {a.push_lines} log lines, {a.sleep_cycles} sleep/wake cycles x 2 x "
        f"{a.sleep_lines} lines = {runs_month} runs and {lines_month:,} log lines, {a.deliveries} deliveries, "
        f"{a.commands} commands; GHAPP_RETENTION {a.retention:g} days; generated in {r['generate_s']:.1f}s)\n"
    )
    months = 2 * r["sample"]
    rows, totals = [], {"two": 0, "kept": 0, "full": 0}
    for name in SIZED:
        e_rows, e_bytes = r["empty"][name]
        t_rows, t_bytes = r["two_months"][name]
        k_rows, k_bytes = r["after_prune"][name]
        f_rows, f_bytes = r["after_prune_full"][name]
        per = f"{(t_bytes - e_bytes) / months / 1024:.1f}" if name != "environments" else "-"
        per_env = f"{(f_bytes - e_bytes) / r['sample'] / 1024:.1f}"
        rows.append(
            [
                name,
                f"{t_rows:,}",
                f"{t_bytes / 2**20:.1f}",
                per,
                f"{k_rows:,}",
                f"{k_bytes / 2**20:.1f}",
                f"{f_bytes / 2**20:.1f}",
                per_env,
            ]
        )
        totals["two"] += t_bytes - e_bytes
        totals["kept"] += k_bytes - e_bytes
        totals["full"] += f_bytes - e_bytes
    print(
        table(
            [
                "table",
                "rows, 2 months",
                "MiB",
                "KiB per env-month (no retention)",
                "rows after prune",
                "MiB after prune + VACUUM",
                "MiB after VACUUM FULL",
                "KiB per environment kept",
            ],
            rows,
        )
    )
    history = totals["two"] - (r["two_months"]["environments"][1] - r["empty"]["environments"][1])
    kept = (totals["full"] - (r["after_prune_full"]["environments"][1] - r["empty"]["environments"][1])) / r["sample"]
    print(
        f"\nin all: {totals['two'] / months / 1024:.0f} KiB per environment-month written, "
        f"{history / months / 1024:.0f} KiB of it history (runs, logs, deliveries, commands); with retention an "
        f"active environment's history stays at {kept / 1024:.0f} KiB (live data after prune and VACUUM FULL: the "
        f"last {a.retention:g} days of runs and commands, 7 of deliveries); x 10,000 active environments: "
        f"{kept * 10_000 / 2**30:.2f} GiB. Deleted by prune: {r['pruned']}. Without FULL the files keep their "
        "high-water mark (the two months) and reuse the freed pages."
    )


def _stats(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.2f} / {max(values):.2f}" if values else "-"


def report_burst(r: dict, burst: int, delay: float) -> None:
    print(f"\n### 2. Burst: {burst} PRs opened at once, {PARALLEL} parallel runs, apply = 2 x sleep {delay:g}s\n")
    s = r["singles"]
    alone = ", ".join(format((x["finished_at"] - x["created_at"]).total_seconds(), ".2f") for x in s)
    print(
        table(
            ["measure", "seconds"],
            [
                ["warm-up PR (includes `terraform init`)", f"{r['warmup_s']:.2f}"],
                [f"one apply alone: delivery -> active, median of {len(s)}", f"{r['one_apply_s']:.2f} ({alone})"],
                ["  of which the Terraform run (started -> recorded)", f"{r['one_run_s']:.2f}"],
                [f"expected: ceil({burst}/{PARALLEL}) x one apply", f"{r['expected_s']:.2f}"],
                [f"measured: first delivery -> last active ({burst} PRs)", f"{r['total_s']:.2f}"],
                ["  client side: first POST -> all seen active (0.1 s poll)", f"{r['observed_s']:.2f}"],
                [f"  all {burst} POSTs answered", f"{r['posted_s']:.2f}"],
                [
                    "ratio measured / expected",
                    (
                        f"**{r['ratio']:.3f}** ({'met' if r['ratio'] <= RATIO_TARGET else 'NOT met'}"
                        f": target <= {RATIO_TARGET:.2f})"
                    ),
                ],
                ["max runs in flight at once (from `runs`)", str(r["max_running"])],
            ],
        )
    )
    # where the time goes, per run: delivery -> claimed -> `workspace new` -> `apply` -> recorded
    ph = sorted(r["burst_phases"], key=lambda x: x["created"] + x["started"])
    first = min(x["created"] for x in ph)
    groups = [("alone", r["single_phases"])]
    for w in range(math.ceil(len(ph) / PARALLEL)):
        groups.append((f"burst wave {w + 1}", ph[w * PARALLEL : (w + 1) * PARALLEL]))
    rows = []
    for label, g in groups:
        rows.append(
            [
                label,
                len(g),
                f"{min(x['created'] + x['started'] for x in g) - first:.2f}" if label != "alone" else "-",
                f"{max(x['created'] + x['done'] for x in g) - first:.2f}" if label != "alone" else "-",
                _stats([x["started"] for x in g]),
                _stats([x["ws_new"] - x["started"] for x in g if x["ws_new"] is not None]),
                _stats([x["apply"] - x["ws_new"] for x in g if x["ws_new"] is not None and x["apply"]]),
                _stats([x["done"] - x["apply"] for x in g if x["apply"] is not None]),
                _stats([x["done"] - x["started"] for x in g]),
            ]
        )
    print()
    print(
        table(
            [
                "runs",
                "n",
                "first claimed s",
                "last active s",
                "delivery->claimed (med/max)",
                "claimed->`workspace new`",
                "`workspace new`",
                "`apply` invoked->recorded",
                "claimed->recorded",
            ],
            rows,
        )
    )
    # slot hand-over: the k-th claim after the first 8 takes the slot of the (k-8)-th finish
    starts = sorted(x["created"] + x["started"] for x in ph)
    ends = sorted(x["created"] + x["done"] for x in ph)
    handover = [starts[k] - ends[k - PARALLEL] for k in range(PARALLEL, len(starts))]
    calls: dict[str, int] = {}
    for _t, _w, c in r["tf_calls"]:
        key = " ".join(c.split()[:2]) if c.startswith("workspace") else c.split()[0]
        calls[key] = calls.get(key, 0) + 1
    cpu = r["cpu"]
    print(
        f"\nslot hand-over (a run recorded -> the next claimed): median {_stats(handover)} s (med/max); "
        f"Terraform invocations during the burst {calls}; CPU over the burst: machine "
        f"{cpu['machine_busy_pct']:.0f}% (200 = both cores), serve process {cpu['ghapp_main_cpu_pct']:.0f}%, "
        f"serve + live children at the end {cpu['ghapp_cpu_pct']:.0f}%; waited {r['quiet'][0]:.0f}s for a quiet "
        f"machine (then {r['quiet'][1]:.0f}% busy); others busy before the burst: "
        f"{[(round(p), c[:60]) for p, c in r['busy_others'][:3]]}"
    )


def report_restart(r: dict, poll: float) -> None:
    print(
        f"\n### 3. Restart with {r['before']['environments']:,} converged environments ({r['real']} applied for real, "
        f"{r['inserted']} "
        "inserted converged)\n"
    )
    b = r["before"]
    rows = [
        [
            "before",
            "-",
            "-",
            b["environments"],
            b["active"],
            b["unconverged"],
            b["unpublished"],
            b["runs"],
            "-",
            "-",
            "-",
            "-",
        ]
    ]
    for s in r["steps"]:
        a = s["after"]
        rows.append(
            [
                s["how"],
                f"{s['ready_s']:.1f}",
                f"{s['waited_s']:.0f}",
                a["environments"],
                a["active"],
                a["unconverged"],
                a["unpublished"],
                a["runs"],
                a["runs"] - b["runs"],
                len(s["tf_calls"]),
                "yes" if a["runs"] == b["runs"] and not s["tf_calls"] else "**no**",
                "yes" if s["ready_s"] <= READY_TARGET_S else "**no**",
            ]
        )
    print(
        table(
            [
                "restart",
                "ready s",
                "waited s",
                "envs",
                "active",
                "unconverged",
                "unpublished",
                "runs rows",
                "new runs",
                "Terraform invocations",
                "0 runs?",
                f"ready <= {READY_TARGET_S:.0f} s?",
            ],
            rows,
        )
    )
    print(
        f"\nthe environments table (heap, TOAST, {b['environments']:,} rows' indexes): "
        f"{b['environments_bytes'] / 2**20:.1f} MiB, {b['environments_bytes'] / b['environments'] / 1024:.1f} KiB "
        "per environment"
    )
    for s in r["steps"]:
        print(
            f"\n{s['how']}: publisher (offline log) lines after restart {s['published']}; serve VmRSS "
            f"{mb(s['rss'].get('VmRSS', 0))} MB; Terraform calls {s['tf_calls'][:5]}"
        )


async def main(args: argparse.Namespace) -> int:
    facts = machine_facts()
    facts["terraform used"] = shutil.which("terraform") or str(bundled_terraform())
    print_facts(facts)
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    root = Path(tempfile.mkdtemp(prefix="ghapp-scale-"))
    bench = Bench(args, root)
    failed = False
    try:
        if 1 in args.only:
            results = []
            for variant in args.variants:
                for n in args.environments:
                    results.append(await bench.memory(variant, n))
            report_memory(results)
            report_pages(results)
        g = None
        if 2 in args.only:
            r, g = await bench.burst()
            report_burst(r, args.burst, args.delay)
        if 3 in args.only:
            for n in args.environments:  # benchmark 2's server is topped up to the first count
                report_restart(await bench.restart(g, n), args.poll)
                g = None
        if 4 in args.only:
            report_size(await bench.size(), args)
    except BaseException:
        failed = True
        for g in bench.servers:
            print(f"--- {g.workdir.name} log tail:\n{g.log_tail(40)}", file=sys.stderr)
        raise
    finally:
        for g in bench.servers:
            with contextlib.suppress(Exception):
                g.stop(timeout=30)
        left = kill_leftovers(root)
        print(f"\nleftover processes after stopping every serve: {len(left)}" + "".join(f"\n  {x}" for x in left))
        if args.keep or failed:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="1,2,3", type=lambda s: {int(x) for x in s.split(",")}, help="1,2,3,4")
    p.add_argument(
        "--environments",
        default=[1000],
        type=lambda s: [int(x) for x in s.split(",")],
        help="benchmarks 1 and 3: environments tracked, one server each (e.g. 1000,10000: side by side)",
    )
    p.add_argument(
        "--variants",
        default=("converged", "all delivered"),
        type=lambda s: s.split(","),
        help="benchmark 1: converged,all delivered",
    )
    p.add_argument("--requests", type=int, default=50, help="benchmark 1: sequential GETs of each page")
    p.add_argument("--sample", type=int, default=200, help="benchmark 4: environments given two months of history")
    p.add_argument("--pushes", type=int, default=20, help="benchmark 4: pushes a month (one apply each)")
    p.add_argument("--push-lines", type=int, default=80, help="benchmark 4: log lines of a push's apply")
    p.add_argument("--sleep-cycles", type=int, default=22, help="benchmark 4: sleep/wake cycles a month (2 applies)")
    p.add_argument("--sleep-lines", type=int, default=25, help="benchmark 4: log lines of a sleep's or wake's apply")
    p.add_argument("--deliveries", type=int, default=200, help="benchmark 4: webhook deliveries a month")
    p.add_argument("--commands", type=int, default=4, help="benchmark 4: comment commands a month")
    p.add_argument("--retention", type=float, default=30, help="benchmark 4: GHAPP_RETENTION in days")
    p.add_argument("--hold", type=float, default=120, help="benchmark 1: TF_VAR_delay, keeps runs in flight")
    p.add_argument("--steady", type=float, default=10, help="benchmark 1: seconds sampled with 8 runs in flight")
    p.add_argument("--delay", type=float, default=10, help="benchmark 2: TF_VAR_delay (apply = 2 x sleep, parallel)")
    p.add_argument("--burst", type=int, default=50)
    p.add_argument("--singles", type=int, default=3)
    p.add_argument("--poll", type=float, default=5.0, help="GHAPP_POLL_INTERVAL's default; benchmark 3 waits 3x+2s")
    p.add_argument("--quiet-wait", type=float, default=20, help="wait at most this long for a quiet machine")
    p.add_argument("--profile", type=Path, help="py-spy record the serve process during the burst into this dir")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    return p.parse_args()


if __name__ == "__main__":

    def _term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    sys.exit(asyncio.run(main(parse_args())))
