"""Test helpers: real deliveries (and variants derived from them in code), signing, waiting on conditions,
and a real `ghapp serve` process."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from ghapp.deliveries import sign
from tests import github_clock

ROOT = Path(__file__).resolve().parent.parent
WEBHOOKS = ROOT / "tests" / "github" / "webhooks"


def fake_sha(*parts: object) -> str:
    """A stable SHA-1 made of `parts` (one part: the SHA-1 of its text)."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


class Deliveries:
    """Real example deliveries from tests/github/webhooks (vendored from octokit/webhooks), signed with the test secret."""

    def __init__(self, secret: str):
        self.secret = secret

    @staticmethod
    def stamp() -> str:
        """GitHub's clock (tests/github_clock.py), shared with the fake GitHub: each call one second later, so
        events made one after another carry increasing `updated_at`/`created_at`, as GitHub's do."""
        return github_clock.stamp()

    @staticmethod
    def payload(name: str) -> dict[str, Any]:
        return json.loads((WEBHOOKS / f"{name}.json").read_text())

    def pull_request(
        self,
        action: str,
        *,
        number: int | None = None,
        sha: str | None = None,
        repo_id: int | None = None,
        repository: str | None = None,
        fork: bool = False,
        updated_at: str | None = None,
    ) -> dict:
        """`pull_request.<action>` with the PR number, head SHA or repository changed; `fork` makes the head a fork;
        `updated_at` is the next `stamp()` unless given."""
        data = copy.deepcopy(self.payload(f"pull_request.{action}"))
        pr = data["pull_request"]
        pr["updated_at"] = updated_at or self.stamp()
        if number is not None:
            data["number"] = pr["number"] = number
        if sha is not None:
            pr["head"]["sha"] = sha
        if repo_id is not None:
            data["repository"]["id"] = pr["base"]["repo"]["id"] = pr["head"]["repo"]["id"] = repo_id
        if repository is not None:
            data["repository"]["full_name"] = pr["base"]["repo"]["full_name"] = repository
            pr["head"]["repo"]["full_name"] = repository
        if fork:
            pr["head"]["repo"] = {
                **pr["head"]["repo"],
                "id": data["repository"]["id"] + 1000,
                "full_name": "contributor/Hello-World",
                "fork": True,
            }
        return data

    def headers(self, event: str, body: bytes, delivery_id: str | None = None) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, self.secret),
        }

    def signed(self, event: str, data: dict, delivery_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(data).encode()
        return body, self.headers(event, body, delivery_id)


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def environment(pool, env_id: int) -> dict:
    row = await pool.fetchrow("SELECT * FROM environments WHERE id = $1", env_id)
    return dict(row) if row else {}


async def runs(pool, env_id: int) -> list[dict]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM runs WHERE environment_id = $1 ORDER BY id", env_id)]


def processes_with(*texts: str) -> list[int]:
    """Pids of live processes whose command line contains every one of `texts`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((x for x in (entry / "status").read_text().splitlines() if x.startswith("State:")), "")
        except OSError:
            continue
        if all(t in cmdline for t in texts) and "zombie" not in state:
            found.append(int(entry.name))
    return found


def processes_in_dir(path: Path) -> list[int]:
    """Pids of live processes whose working directory is `path` or below it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(path) or cwd.startswith(f"{path}/"):
            found.append(int(entry.name))
    return found


def processes_in_env(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment has `name=value`."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = next(x for x in (entry / "status").read_text().splitlines() if x.startswith("State:"))
                if "zombie" not in state:
                    found.append(int(entry.name))
        except (OSError, StopIteration):
            continue
    return found


class ServeProcess:
    """`ghapp serve` as a real child process (for SIGKILL and restart tests)."""

    def __init__(
        self, env: dict[str, str], port: int, log_path: Path, cwd: Path = ROOT, python_args: tuple[str, ...] = ()
    ):
        self.env = {"GHAPP_GATEWAY_PORT": str(free_port()), **env}  # each replica's preview gateway: its own port
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.python_args = python_args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.python_args, "-m", "ghapp", "serve"],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


PREVIEW_PORTS = 30000  # previews of terraform/local in tests listen from here on (preview_port_base)


def preview_port_base() -> int:
    """TF_VAR_port_base for terraform/local in tests: each pytest process its own base, so sessions running at once
    rarely meet, and out of free_port's range: a sleeping preview's port (closed while it sleeps) is never handed to
    a server that then keeps its wake from starting. Below the ephemeral range for environment ids up to 60."""
    return PREVIEW_PORTS + os.getpid() % 2700


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999): no outgoing connection takes it before the server
    binds it, no self-connect makes it look open, and it is away from the local module's default 20000 + id and
    from the previews' ports in tests (preview_port_base)."""
    for _ in range(200):
        port = random.randrange(21000, PREVIEW_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


async def ready(proc: ServeProcess) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{proc.url}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def deliver(proc: ServeProcess, deliveries: Deliveries, data: dict, event: str = "pull_request") -> dict:
    """POST a signed delivery to a `ghapp serve` process; it must be accepted."""
    body, headers = deliveries.signed(event, data)
    async with aiohttp.ClientSession() as s, s.post(f"{proc.url}/webhooks", data=body, headers=headers) as r:
        assert r.status == 202, await r.text()
        return await r.json()
