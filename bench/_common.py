"""Helpers shared by the benchmarks (run by hand, see docs/benchmarks.md): deliveries, a `ghapp serve` child
process, CPU accounting through /proc, machine facts and percentiles."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import WEBHOOKS, ServeProcess, fake_sha, free_port

__all__ = ["WEBHOOKS", "fake_sha", "free_port"]  # re-exported for the benchmarks

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret"
SCRIPTED_MODULE = ROOT / "tests" / "modules" / "scripted"
LOCAL_MODULE = ROOT / "terraform" / "local"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_NUMBER_HOLE = 987654321
_SHA_HOLE = "SHAHOLE" + "x" * 33  # 40 characters, appears nowhere else

# Never leak a developer's configuration into a benchmarked process.
_STRIPPED_PREFIXES = ("GHAPP_", "GITHUB_", "TF_VAR_")
_STRIPPED = ("DATABASE_URL", "TF_WORKSPACE", "PG_CONN_STR")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sign(body: bytes, secret: str = SECRET) -> str:
    """X-Hub-Signature-256, exactly as GitHub (and `ghapp.deliveries.sign`) computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Payload:
    """A real delivery from tests/github/webhooks with the PR number and the head SHA left as holes (what
    tests/support.py's Deliveries changes), so a new signed body costs two bytes.replace and one HMAC."""

    def __init__(self, name: str):
        self.name = name
        data = json.loads((WEBHOOKS / f"{name}.json").read_text())
        assert str(_NUMBER_HOLE) not in json.dumps(data) and _SHA_HOLE not in json.dumps(data)
        data["number"] = data["pull_request"]["number"] = _NUMBER_HOLE
        data["pull_request"]["head"]["sha"] = _SHA_HOLE
        self.event, _, self.action = name.partition(".")
        self.template = json.dumps(data).encode()
        self.repository = data["repository"]["full_name"]
        self.repo_id = data["repository"]["id"]

    def body(self, number: int, sha: str) -> bytes:
        return self.template.replace(b"987654321", str(number).encode()).replace(_SHA_HOLE.encode(), sha.encode())

    def headers(self, body: bytes, delivery_id: str, secret: str = SECRET) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
            "X-GitHub-Event": self.event,
            "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": sign(body, secret),
        }


def http_json(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10.0):
    """(status, parsed JSON body or text) without any proxy."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with _NO_PROXY.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_PREFIXES) and k not in _STRIPPED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


class GhappServe(ServeProcess):
    """tests/support.py's `ghapp serve` child, with its own data dir (so its own embedded PostgreSQL), started in
    its work dir (so no developer's .env is read) with a clean environment, and waited on until ready."""

    def __init__(
        self,
        workdir: Path,
        data_dir: Path | None = None,
        port: int | None = None,
        python_args: tuple[str, ...] = (),
        **settings: str,
    ):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.data_dir = data_dir or workdir / "data"
        port = port or free_port()
        env = clean_env(
            GHAPP_DATA_DIR=str(self.data_dir),
            GITHUB_WEBHOOK_SECRET=SECRET,
            GHAPP_HOST="127.0.0.1",
            GHAPP_PORT=str(port),
            **{k: str(v) for k, v in settings.items()},
        )
        super().__init__(env, port, workdir / "ghapp.log", cwd=workdir, python_args=python_args)

    def start(self, timeout: float = 90.0) -> GhappServe:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ghapp serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_json(self.url + "/readyz", timeout=2)[0] == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ghapp serve not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_count(self, text: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(text)
        except OSError:
            return 0

    def database_url(self) -> str | None:
        from ghapp.db.embedded import running_url

        return running_url(self.data_dir / "postgres")


# --- CPU accounting ----------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(root: int) -> dict[int, float]:
    """CPU seconds of `root` and every live descendant (ghapp + its PostgreSQL server and backends)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))):
            stats[int(entry)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[pid] = stats[pid][1]
            todo.extend(children.get(pid, ()))
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(fields) - fields[7]  # steal: time the hypervisor gave this VM's CPUs to someone else
    return total - fields[3] - fields[4], total


class CpuMeter:
    """CPU used by some process trees, and by the whole machine, between `start()` and `stop()`."""

    def __init__(self, **roots: int):
        self.roots = roots

    def start(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.before = {name: process_tree(pid) for name, pid in self.roots.items()}
        self.machine0 = machine_ticks()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        busy1, total1 = machine_ticks()
        out = {
            "wall_s": wall,
            "machine_busy_pct": 100.0
            * (busy1 - self.machine0[0])
            / max(1, total1 - self.machine0[1])
            * (os.cpu_count() or 1),
        }
        for name, pid in self.roots.items():
            after = process_tree(pid)
            used = sum(after[p] - self.before[name].get(p, 0.0) for p in after)
            out[f"{name}_cpu_pct"] = 100.0 * used / wall if wall > 0 else 0.0
            main = after.get(pid, 0.0) - self.before[name].get(pid, 0.0)
            out[f"{name}_main_cpu_pct"] = 100.0 * main / wall if wall > 0 else 0.0
        return out


def busy_others(seconds: float = 1.0, exclude: set[int] = frozenset()) -> list[tuple[float, str]]:
    """Processes (not ours) that used CPU during `seconds`: (percent, command) - other people's work skews results."""

    def snap():
        out = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in exclude and (s := _stat(int(entry))):
                out[int(entry)] = s[1]
        return out

    a = snap()
    time.sleep(seconds)
    b = snap()
    found = []
    for pid, cpu in b.items():
        used = 100.0 * (cpu - a.get(pid, cpu)) / seconds
        if used >= 5 and pid != os.getpid():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((used, cmd[:100]))
    return sorted(found, reverse=True)


def wait_quiet(threshold_pct: float, max_wait: float, window: float = 1.0) -> tuple[float, float]:
    """Wait (at most `max_wait` s) until the whole machine is below `threshold_pct` busy (100 = one core) over a
    `window`: other people's test runs share these 2 cores. Returns (seconds waited, last busy %)."""
    start = time.monotonic()
    while True:
        b0, t0 = machine_ticks()
        time.sleep(window)
        b1, t1 = machine_ticks()
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)
        waited = time.monotonic() - start
        if busy < threshold_pct or waited >= max_wait:
            return waited, busy


# --- facts and numbers -------------------------------------------------------------------------------------------


def terraform_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "version", "-json"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": "/dev/null"},
        )
        return json.loads(out.stdout)["terraform_version"]
    except Exception as e:  # noqa: BLE001 - a fact for the report, never fatal
        return f"unknown ({e})"


def bundled_terraform() -> str | None:
    """The real `ghapp-terraform` script (not a pyenv shim), next to this Python."""
    candidate = Path(sys.executable).with_name("ghapp-terraform")
    return str(candidate) if candidate.exists() else shutil.which("ghapp-terraform")


def machine_facts() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiohttp
    import asyncpg

    facts = {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "asyncpg": asyncpg.__version__,
        "loadavg": Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__(),
    }
    with contextlib.suppress(Exception):  # read-only git: which ghapp was measured (others commit meanwhile)
        facts["ghapp commit"] = subprocess.run(
            ["git", "log", "-1", "--format=%h %cI"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    if tf := shutil.which("terraform"):
        facts["terraform (PATH)"] = f"{terraform_version(tf)} ({tf})"
    if tf := bundled_terraform():
        facts["terraform (bundled)"] = f"{terraform_version(tf)} ({tf})"
    return facts


def print_facts(facts: dict[str, str]) -> None:
    print("machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
