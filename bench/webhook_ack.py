"""Benchmark: how fast `ghapp serve` acknowledges webhook deliveries, next to a bare aiohttp handler.

  python -m bench.webhook_ack                 # the full run, about 3 minutes
  python -m bench.webhook_ack --quick         # shorter steps, for trying it out
  python -m bench.webhook_ack --profile DIR   # also py-spy ghapp under closed-loop load (pip install py-spy)

Starts two servers as child processes:
- `python -m ghapp serve`: its own data dir in a temp dir (so its embedded PostgreSQL), GITHUB_WEBHOOK_SECRET set,
  offline (no GITHUB_APP_ID), GHAPP_TERRAFORM_MODULE=tests/modules/scripted and GHAPP_PUSH_SETTLE=1h. The PRs
  are opened and applied once before measuring; after that every `synchronize` makes the environment unconverged
  but due only in an hour, so no Terraform runs while measuring, yet the reconciler is live: each delivery's NOTIFY
  wakes it and it queries for due work, as in production.
- bench/bare_server.py: aiohttp, `POST /webhooks` returns 202 and does nothing else.
Then runs bench/loadgen.py (a separate process) against each in turn: (a) open loop at 200 deliveries/s for 20 s,
(b) closed loop with 1, 8 and 32 connections, (c) an open-loop ramp until p99 > 25 ms, a non-2xx or a shortfall.
Deliveries are real `pull_request.synchronize` payloads, signed, each with a unique X-GitHub-Delivery and head SHA,
over 5 PR numbers. Targets: p99 <= 25 ms at 200/s; ghapp's max rate >= 40 % of the bare handler's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import (
    SCRIPTED_MODULE,
    CpuMeter,
    GhappServe,
    Payload,
    busy_others,
    fake_sha,
    free_port,
    http_json,
    machine_facts,
    print_facts,
    table,
    wait_quiet,
)

HERE = Path(__file__).resolve().parent
PRS = [101, 102, 103, 104, 105]
P99_TARGET_MS = 25.0
RATIO_TARGET = 0.40


class Bare:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(workdir / "bare.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_server", str(self.port)],
            cwd=HERE.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_json(self.url + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("bare server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def loadgen(url: str, *mode_args: str) -> dict:
    """Run bench/loadgen.py as its own process; its JSON result."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            url + "/webhooks",
            "--prs",
            ",".join(map(str, PRS)),
            *mode_args,
        ],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{out.stderr}")
    return json.loads(out.stdout)


QUIET = {"threshold": 25.0, "max_wait": 15.0, "retries": 1}


def measured(name: str, pid: int, url: str, *mode_args: str, retries: int | None = None) -> dict:
    """One loadgen run with the server's CPU (process tree: ghapp + its PostgreSQL) and the machine's. Other
    people's processes share the 2 cores: wait for a quiet machine first, and repeat a run during which others
    used more than QUIET["threshold"] % CPU (keeping the least disturbed one)."""
    best = None
    for _attempt in range(1 + (QUIET["retries"] if retries is None else retries)):
        waited, _busy = wait_quiet(QUIET["threshold"], QUIET["max_wait"])
        meter = CpuMeter(server=pid).start()
        result = loadgen(url, *mode_args)
        cpu = meter.stop()
        result.update(
            server=name,
            server_cpu_pct=round(cpu["server_cpu_pct"], 1),
            server_main_cpu_pct=round(cpu["server_main_cpu_pct"], 1),
            machine_busy_pct=round(cpu["machine_busy_pct"], 1),
            waited_for_quiet_s=round(waited, 1),
        )
        result["others_cpu_pct"] = round(
            max(0.0, cpu["machine_busy_pct"] - cpu["server_cpu_pct"] - result["client_cpu_pct"]), 1
        )
        if best is None or result["others_cpu_pct"] < best["others_cpu_pct"]:
            best = result
        if result["others_cpu_pct"] <= QUIET["threshold"]:
            break
    best["disturbed"] = best["others_cpu_pct"] > QUIET["threshold"]
    return best


def ok(r: dict) -> bool:
    return r["non_2xx"] == 0 and not r["errors"]


def open_pull_requests(ghapp: GhappServe) -> None:
    """Open the PRs and wait until each is applied (scripted module), so measuring starts from steady state."""
    payload = Payload("pull_request.opened")
    ids = []
    for number in PRS:
        body = payload.body(number, fake_sha("opened", number, uuid.uuid4()))
        status, reply = http_json(ghapp.url + "/webhooks", body, payload.headers(body, str(uuid.uuid4())))
        if status != 202:
            raise RuntimeError(f"opening PR {number}: {status} {reply}")
        ids.append(reply["environment_id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [http_json(f"{ghapp.url}/api/environments/{i}")[1]["status"] for i in ids]
        if all(s == "active" for s in states):
            return
        if "failed" in states:
            raise RuntimeError(f"warm-up apply failed:\n{ghapp.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"PRs not active after 120 s: {states}")


async def _count_deliveries(url: str) -> tuple[int, dict]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        deliveries = await conn.fetchval("SELECT count(*) FROM deliveries")
        runs = dict(await conn.fetch("SELECT state, count(*) FROM runs GROUP BY state"))
        return deliveries, runs
    finally:
        await conn.close()


def profile(ghapp: GhappServe, out_dir: Path, connections: int, duration: float) -> dict:
    """py-spy the ghapp process under closed-loop load; a flame graph and the functions that take the time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "ghapp-webhooks.pyspy.txt"
    svg = out_dir / "ghapp-webhooks.svg"
    wait_quiet(QUIET["threshold"], QUIET["max_wait"])
    spy_args = [
        "py-spy",
        "record",
        "--pid",
        str(ghapp.proc.pid),
        "--rate",
        "250",
        "--duration",
        str(int(duration + 2)),
        "--nonblocking",
    ]
    spies = [
        subprocess.Popen(
            [*spy_args, "--format", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ),
        subprocess.Popen([*spy_args, "-o", str(svg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    time.sleep(0.5)
    meter = CpuMeter(server=ghapp.proc.pid).start()
    result = loadgen(ghapp.url, "closed", "--connections", str(connections), "--duration", str(duration))
    result.update({k: round(v, 1) for k, v in meter.stop().items()})
    for spy in spies:
        spy.wait(60)
    return {"run": result, "summary": summarize_pyspy(raw), "raw": str(raw), "svg": str(svg)}


def summarize_pyspy(path: Path, top: int = 25) -> dict:
    """Inclusive share of samples per function (a function counted once per stack), and self (leaf) share."""
    inclusive: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if " (" in f else f for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] += n
        leaf[frames[-1]] += n
    pct = lambda c: [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]  # noqa: E731
    return {"samples": total, "inclusive": pct(inclusive), "self": pct(leaf), "by_ghapp_line": by_ghapp_line(path)}


def by_ghapp_line(path: Path, top: int = 20) -> list[tuple[str, float]]:
    """Each sample charged to the innermost frame in ghapp's own code (which line of ghapp caused the work), with
    the asyncpg pool's `Connection.reset` on release and the bare event loop named apart."""
    charged: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own = [f for f in frames if "(ghapp/" in f and "ghapp/cli.py" not in f and "ghapp/__main__" not in f]
        if own:
            key = own[-1].replace("(ghapp/", "(")
        elif any(f.startswith("Connection.reset") for f in frames):
            key = "asyncpg Connection.reset on pool release (no ghapp frame)"
        elif any("web_protocol.py" in f for f in frames):
            key = "aiohttp protocol (parsing, writing; no ghapp frame)"
        else:
            key = "event loop, other"
        charged[key] += n
    return [(k, round(100 * n / total, 1)) for k, n in charged.most_common(top)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop arrival rate (deliveries/s)")
    parser.add_argument("--duration", type=float, default=20.0, help="open-loop duration (s)")
    parser.add_argument("--connections", default="1,8,32", help="closed-loop connection counts")
    parser.add_argument("--closed-duration", type=float, default=6.0)
    parser.add_argument(
        "--ramp",
        default="200,300,400,500,600,800,1000,1500,2000,3000,4000,5000",
        help="open-loop rates for the ramp; empty to skip",
    )
    parser.add_argument("--ramp-duration", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="5 s open loop, 3 s closed loops, 2 s ramp steps")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy ghapp under load, write DIR/*")
    parser.add_argument("--json", type=Path, help="write every result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=QUIET["threshold"],
        help="CPU %% (100 = one core) that other processes may use during a run; busier runs are repeated",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET["max_wait"],
        help="longest wait for a quiet machine before each run (s)",
    )
    parser.add_argument("--retries", type=int, default=QUIET["retries"], help="repeats of a disturbed run")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.closed_duration, args.ramp_duration = 5.0, 3.0, 2.0
    QUIET.update(threshold=args.quiet_threshold, max_wait=args.quiet_wait, retries=args.retries)

    facts = machine_facts()
    print_facts(facts)
    others = busy_others(1.0)
    if others:
        print(
            "WARNING: other processes are using CPU, results will be noisy:",
            *(f"  {p:.0f}% {c}" for p, c in others),
            sep="\n",
        )

    tmp = Path(tempfile.mkdtemp(prefix="ghapp-bench-ack-"))
    ghapp = GhappServe(
        tmp / "ghapp", GHAPP_TERRAFORM_MODULE=str(SCRIPTED_MODULE), GHAPP_PUSH_SETTLE="1h", GHAPP_MAX_PARALLEL_RUNS="4"
    )
    bare = None
    results: dict = {"facts": facts, "open": [], "closed": [], "ramp": {}}
    try:
        bare = Bare(tmp)
        t = time.monotonic()
        ghapp.start()
        print(
            f"ghapp serve ready in {time.monotonic() - t:.1f} s (embedded PostgreSQL, migrations); "
            f"bare server on {bare.url}; work dir {tmp}"
        )
        open_pull_requests(ghapp)
        servers = [("bare", bare.proc.pid, bare.url), ("ghapp", ghapp.proc.pid, ghapp.url)]
        for _name, _pid, url in servers:  # warm up: connections, prepared statements, code paths
            loadgen(url, "closed", "--connections", "4", "--duration", "2")

        print(f"\n(a) open loop, {args.rate:g} deliveries/s for {args.duration:g} s")
        for name, pid, url in servers:
            r = measured(name, pid, url, "open", "--rate", str(args.rate), "--duration", str(args.duration))
            results["open"].append(r)
            print(f"  {name}: {json.dumps(r)}")

        print(f"\n(b) closed loop, {args.closed_duration:g} s per connection count")
        for conns in [int(c) for c in args.connections.split(",") if c]:
            for name, pid, url in servers:
                r = measured(
                    name, pid, url, "closed", "--connections", str(conns), "--duration", str(args.closed_duration)
                )
                results["closed"].append(r)
                print(f"  {name} x{conns}: {json.dumps(r)}")

        rates = [float(r) for r in args.ramp.split(",") if r]
        if rates:
            print(
                f"\n(c) open-loop ramp, {args.ramp_duration:g} s per step, until p99 > {P99_TARGET_MS:g} ms, "
                "a non-2xx, an error or < 97 % of the rate"
            )
            for name, pid, url in servers:
                steps = results["ramp"][name] = []
                for rate in rates:
                    r = measured(
                        name, pid, url, "open", "--rate", str(rate), "--duration", str(args.ramp_duration), retries=0
                    )
                    r["passed"] = ok(r) and r["p99_ms"] <= P99_TARGET_MS and r["achieved_rate"] >= 0.97 * rate
                    steps.append(r)
                    print(
                        f"  {name} {rate:g}/s: p99 {r['p99_ms']} ms, achieved {r['achieved_rate']}/s, "
                        f"non-2xx {r['non_2xx']}, errors {r['errors']}, server CPU {r['server_cpu_pct']}%"
                        f"{'' if r['passed'] else '  <- stop'}"
                    )
                    if not r["passed"]:
                        break

        if args.profile:
            print(f"\nprofiling ghapp under closed-loop load (16 connections, 10 s) into {args.profile}")
            results["profile"] = profile(ghapp, args.profile, 16, 10.0)
            s = results["profile"]["summary"]
            print(f"  {s['samples']} samples; run: {results['profile']['run']['achieved_rate']}/s")
            print("  inclusive:", *(f"    {p:5.1f}%  {f}" for f, p in s["inclusive"]), sep="\n")
            print("  self:", *(f"    {p:5.1f}%  {f}" for f, p in s["self"]), sep="\n")
            print("  by ghapp line:", *(f"    {p:5.1f}%  {f}" for f, p in s["by_ghapp_line"]), sep="\n")

        if url := ghapp.database_url():
            deliveries, runs = asyncio.run(_count_deliveries(url))
            results["ghapp_database"] = {"deliveries": deliveries, "runs": runs}
        results["ghapp_errors_logged"] = ghapp.log_count(" ERROR ")
    finally:
        ghapp.stop()
        if bare:
            bare.stop()
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nall results: {args.json}")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(results: dict, args) -> None:
    print("\n## Results\n")
    rows = []
    for r in results["open"]:
        rows.append(
            [
                r["server"],
                r["achieved_rate"],
                r["completed"],
                r["non_2xx"],
                sum(r["errors"].values()),
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["client_lag_p99_ms"],
                r["server_cpu_pct"],
                r["others_cpu_pct"],
            ]
        )
    print(f"(a) open loop at {args.rate:g}/s for {args.duration:g} s (latency from the due time, ms)\n")
    print(
        table(
            [
                "server",
                "achieved/s",
                "answered",
                "non-2xx",
                "errors",
                "p50",
                "p90",
                "p99",
                "max",
                "client lag p99",
                "server CPU %",
                "others CPU %",
            ],
            rows,
        )
    )
    rows = [
        [
            r["server"],
            r["connections"],
            r["achieved_rate"],
            r["non_2xx"],
            sum(r["errors"].values()),
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            r["server_cpu_pct"],
            r["server_main_cpu_pct"],
            r["client_cpu_pct"],
            r["others_cpu_pct"],
        ]
        for r in results["closed"]
    ]
    print(f"\n(b) closed loop, {args.closed_duration:g} s each\n")
    print(
        table(
            [
                "server",
                "connections",
                "deliveries/s",
                "non-2xx",
                "errors",
                "p50 ms",
                "p99 ms",
                "max ms",
                "server CPU % (tree)",
                "server main process CPU %",
                "client CPU %",
                "others CPU %",
            ],
            rows,
        )
    )
    best = {}
    for name in ("bare", "ghapp"):
        clean = [r["achieved_rate"] for r in results["closed"] if r["server"] == name and ok(r)]
        best[name] = max(clean, default=0.0)
    ramp_best = {
        name: max((s["target_rate"] for s in steps if s["passed"]), default=0.0)
        for name, steps in results["ramp"].items()
    }
    if ramp_best:
        print("\n(c) open-loop ramp: highest rate with p99 <= 25 ms, no non-2xx, no errors\n")
        print(
            table(
                ["server", "highest passing rate/s", "first failing step"],
                [
                    [
                        n,
                        v,
                        next(
                            (
                                f"{s['target_rate']:g}/s: p99 {s['p99_ms']} ms, achieved {s['achieved_rate']}/s, "
                                f"non-2xx {s['non_2xx']}, errors {sum(s['errors'].values())}"
                                for s in results["ramp"][n]
                                if not s["passed"]
                            ),
                            "none",
                        ),
                    ]
                    for n, v in ramp_best.items()
                ],
            )
        )
    ghapp_open = next(r for r in results["open"] if r["server"] == "ghapp")
    p99_met = ghapp_open["p99_ms"] <= P99_TARGET_MS and ok(ghapp_open)
    ratio = best["ghapp"] / best["bare"] if best["bare"] else float("nan")
    results["verdict"] = {
        "p99_ms": ghapp_open["p99_ms"],
        "p99_met": p99_met,
        "max_rate_ghapp": best["ghapp"],
        "max_rate_bare": best["bare"],
        "ratio": round(ratio, 3),
        "ratio_met": ratio >= RATIO_TARGET,
        "ramp_best": ramp_best,
    }
    print("\nTargets:")
    print(
        f"  p99 at {args.rate:g}/s <= {P99_TARGET_MS:g} ms: ghapp {ghapp_open['p99_ms']} ms, "
        f"non-2xx {ghapp_open['non_2xx']} -> {'MET' if p99_met else 'NOT MET'}"
    )
    if best["bare"]:
        print(
            f"  max sustained rate (closed loop, best clean run): ghapp {best['ghapp']}/s vs bare {best['bare']}/s "
            f"= {100 * ratio:.0f} % (target >= {100 * RATIO_TARGET:.0f} %) -> "
            f"{'MET' if ratio >= RATIO_TARGET else 'NOT MET'}"
        )
    if ramp_best.get("bare"):
        print(
            f"  ramp (rate at p99 <= 25 ms): ghapp {ramp_best.get('ghapp')}/s vs bare {ramp_best['bare']}/s "
            f"= {100 * ramp_best.get('ghapp', 0) / ramp_best['bare']:.0f} %"
        )
    if "ghapp_database" in results:
        accepted = sum(
            r["statuses"].get("202", 0) for r in results["open"] + results["closed"] if r["server"] == "ghapp"
        )
        print(
            f"  ghapp database afterwards: {results['ghapp_database']} (202s counted in the measured windows: "
            f"{accepted}; warm-up and uncounted requests add more); ERROR lines in its log: "
            f"{results['ghapp_errors_logged']}"
        )


if __name__ == "__main__":
    sys.exit(main())
