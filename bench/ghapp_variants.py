"""Diagnostic for bench/webhook_ack.py: what would make ghapp's webhook intake cheaper? Runs ghapp's own app
(ghapp.app.create_app) in variants made by patching *this* process only; ghapp's code is not changed.

  python -m bench.ghapp_variants            # each variant: open loop 200/s for 10 s, closed loop 16 connections

Variants:
- as-is: the same app `ghapp serve` runs.
- no-reset: the asyncpg pool returns connections without `Connection.reset()` (asyncpg runs
  `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release: one more round trip per
  acquire). ghapp uses no session state that needs it (its advisory lock is transaction-scoped).
- no-workers: create_app(workers=False): no background tasks (reconciler, publisher, reaper), which all wake on
  every NOTIFY: what that costs the intake.
- no-reset+no-workers: both.
Same settings as webhook_ack.py: scripted module, GHAPP_PUSH_SETTLE=1h, embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench._common import SCRIPTED_MODULE, GhappServe, machine_facts, print_facts, table

VARIANTS = ["as-is", "no-reset", "no-workers", "no-reset+no-workers"]


def serve(variant: str) -> None:
    """Run ghapp's app with `variant` applied (started by `main` as `python ghapp_variants.py --serve VARIANT`)."""
    import logging

    from aiohttp import web

    from ghapp import db
    from ghapp.config import Settings
    from ghapp.web import app as ghapp_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings = Settings.from_env(dotenv=None)

    if "no-reset" in variant:
        original = db.create_pool

        async def _no_reset(_conn) -> None:
            return None

        async def create_pool(url: str, **kwargs):
            return await original(url, reset=_no_reset, **kwargs)

        db.create_pool = create_pool
    app = ghapp_app.create_app(settings, workers="no-workers" not in variant)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    import webhook_ack

    print_facts(machine_facts())
    rows, results = [], []
    for variant in args.variants.split(","):
        tmp = Path(tempfile.mkdtemp(prefix=f"ghapp-bench-var-{variant.replace('+', '-and-')}-"))
        ghapp = GhappServe(tmp, GHAPP_TERRAFORM_MODULE=str(SCRIPTED_MODULE), GHAPP_PUSH_SETTLE="1h")
        try:
            _start(ghapp, variant)
            webhook_ack.loadgen(ghapp.url, "closed", "--connections", "4", "--duration", "3")  # creates the PRs
            time.sleep(3)  # their one apply each (scripted module) ends before measuring
            o = webhook_ack.measured(
                variant, ghapp.proc.pid, ghapp.url, "open", "--rate", "200", "--duration", str(args.duration)
            )
            c = webhook_ack.measured(
                variant,
                ghapp.proc.pid,
                ghapp.url,
                "closed",
                "--connections",
                str(args.connections),
                "--duration",
                str(args.duration),
            )
        finally:
            ghapp.stop()
        results.append({"variant": variant, "open": o, "closed": c})
        rows.append(
            [
                variant,
                o["p50_ms"],
                o["p99_ms"],
                o["non_2xx"] + sum(o["errors"].values()),
                o["server_cpu_pct"],
                round(10 * o["server_cpu_pct"] / o["achieved_rate"], 2),
                c["achieved_rate"],
                c["p99_ms"],
                c["non_2xx"] + sum(c["errors"].values()),
                c["server_cpu_pct"],
                c["others_cpu_pct"],
            ]
        )
        print(f"  {variant}: open {json.dumps(o)}\n  {variant}: closed {json.dumps(c)}", flush=True)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(
        table(
            [
                "variant",
                "200/s p50 ms",
                "200/s p99 ms",
                "200/s bad",
                "200/s server CPU %",
                "CPU ms per delivery",
                f"closed x{args.connections} deliveries/s",
                "closed p99 ms",
                "closed bad",
                "closed server CPU %",
                "closed others CPU %",
            ],
            rows,
        )
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _start(ghapp: GhappServe, variant: str) -> None:
    """GhappServe.start, but running this file's `--serve VARIANT` instead of `-m ghapp serve`."""
    import subprocess

    log = open(ghapp.log_path, "ab")
    ghapp.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", variant],
        env=ghapp.env,
        cwd=ghapp.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    from bench._common import http_json

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if ghapp.proc.poll() is not None:
            raise RuntimeError(f"variant {variant} exited:\n{ghapp.log_tail()}")
        try:
            if http_json(ghapp.url + "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    ghapp.stop()
    raise RuntimeError(f"variant {variant} not ready:\n{ghapp.log_tail()}")


if __name__ == "__main__":
    sys.exit(main())
