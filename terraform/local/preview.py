#!/usr/bin/env python3
"""Run one local preview as a detached process group (helper of terraform/local's local-exec provisioners).

Terraform runs `python3 preview.py init|start|stop|remove` with settings in PREVIEW_* environment variables.
Internal commands: `supervise ENV_DIR` (process-group leader of one preview), `serve` (built-in page server).
"""

from __future__ import annotations

import fcntl
import html
import http.client
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

SCRIPT = os.path.abspath(__file__)
# Set only in the supervisor's environment and inherited by everything it starts: finds a preview's processes
# even when the pid file is missing (a `start` killed between spawning the supervisor and writing the file).
MARKER = "GHAPP_PREVIEW_ENV_DIR"
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 3.0
POLL = 0.05
LOG_TAIL = 40
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
SHA_RE = re.compile(r"[0-9a-fA-F]{7,40}\Z")
# The preview may run a fork's code; Terraform's environment holds the app's secrets. Pass on only these.
PASS_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
PREVIEW_INFO = (
    "PREVIEW_NAME",
    "PREVIEW_PORT",
    "PREVIEW_COMMAND",
    "PREVIEW_GIT_SHA",
    "PREVIEW_HEAD_REF",
    "PREVIEW_REPOSITORY",
    "PREVIEW_PR_NUMBER",
    "PREVIEW_LIFETIME_LOCK",
)


class Failure(Exception):
    """An error reported to Terraform (exit status 1)."""


@dataclass(frozen=True)
class Env:
    """One environment's directory and the files in it."""

    env_dir: Path

    @classmethod
    def from_dir(cls, env_dir: str, name: str | None = None) -> Env:
        path = Path(env_dir)
        name = path.name if name is None else name
        if not NAME_RE.match(name):
            raise Failure(f"environment name {name!r} is not a DNS label")
        if not path.is_absolute() or os.path.normpath(env_dir) != env_dir or path.name != name:
            raise Failure(f"environment directory {env_dir!r} must be an absolute, normalised path ending in {name!r}")
        return cls(path)

    @property
    def pid_file(self) -> Path:
        return self.env_dir / "preview.pid"

    @property
    def log_file(self) -> Path:
        return self.env_dir / "preview.log"

    @property
    def checkout(self) -> Path:
        return self.env_dir / "checkout"

    @property
    def source(self) -> Path:
        return self.env_dir / "source"


# Processes, seen through /proc.


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    return fields[0].decode(), int(fields[2])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    return [pid for pid in _pids() if (stat := _stat(pid)) and stat[1] == pgid and stat[0] not in ("Z", "X")]


def _is_supervisor(pid: int, env: Env) -> bool:
    """True if pid is this environment's supervisor (and not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return False
    return (
        len(argv) == 4
        and os.path.basename(argv[1]) == b"preview.py"
        and argv[2:] == [b"supervise", os.fsencode(env.env_dir)]
    )


def _marked(env: Env) -> set[int]:
    """Live processes started by this environment's supervisors (they carry MARKER in their environment)."""
    needle = os.fsencode(f"{MARKER}={env.env_dir}")
    found = set()
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and pid != os.getpid() and _alive(pid):
            found.add(pid)
    return found


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _signal_all(groups: set[int], pids: set[int], sig: signal.Signals) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(groups: set[int], pids: set[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_group_members(g) for g in groups) or any(_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def stop(env: Env) -> None:
    """Stop the environment's process group(s): SIGTERM, then SIGKILL. Nothing running is fine."""
    pids = _marked(env)
    groups = {stat[1] for pid in pids if (stat := _stat(pid))}
    pid = _read_pid(env.pid_file)
    if pid is not None and _is_supervisor(pid, env):
        groups.add(pid)
    groups.discard(os.getpgrp())
    if groups or pids:
        print(f"preview: stopping process group(s) {sorted(groups)}", flush=True)
        _signal_all(groups, pids, signal.SIGTERM)
        if not _wait_gone(groups, pids, STOP_GRACE):
            _signal_all(groups, pids, signal.SIGKILL)
            if not _wait_gone(groups, pids, KILL_WAIT):
                raise Failure(f"processes of {env.env_dir} survived SIGKILL")
    env.pid_file.unlink(missing_ok=True)


def remove(env: Env) -> None:
    """Stop everything and delete the environment directory."""
    stop(env)
    try:
        shutil.rmtree(env.env_dir)
    except FileNotFoundError:
        pass
    stop(env)  # anything that slipped in while the directory was being removed


# Starting.


def _run_git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )


def _git(args: list[str], cwd: Path | None = None) -> None:
    result = _run_git(args, cwd)
    if result.returncode != 0:
        raise Failure(f"git {args[0]} failed ({result.returncode}): {result.stderr.strip()}")


def checkout(git_url: str, sha: str, dest: Path, pr_number: str) -> None:
    """Clone git_url into dest (or reuse the clone) and check out sha, detached and clean."""
    if not SHA_RE.match(sha):
        raise Failure(f"git_sha {sha!r} is not 7 to 40 hex digits")
    if not (dest / ".git").is_dir():
        shutil.rmtree(dest, ignore_errors=True)
        print("preview: cloning the repository", flush=True)
        _git(["clone", "--quiet", "--no-checkout", "--", git_url, str(dest)])
    else:
        _git(["remote", "set-url", "--", "origin", git_url], dest)

    def has(rev: str) -> bool:
        return _run_git(["cat-file", "-e", f"{rev}^{{commit}}"], dest).returncode == 0

    fetches = [["fetch", "--quiet", "origin"]]
    if len(sha) == 40:
        fetches.insert(0, ["fetch", "--quiet", "origin", sha])  # by SHA: GitHub and protocol v2 allow it
    if pr_number.isdigit():
        fetches.append(["fetch", "--quiet", "origin", f"refs/pull/{pr_number}/head"])  # a fork's head
    for args in fetches:
        if has(sha):
            break
        _run_git(args, dest)
    if not has(sha):
        raise Failure(f"commit {sha} not found in the repository")
    _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", sha], dest)
    _git(["clean", "-ffdxq"], dest)


def copy_source(source_dir: str, dest: Path) -> None:
    """A writable copy of the read-only `source_dir` at dest, made again only when source_dir changes (so what the
    app writes there survives a restart or a sleep at the same commit). Links are copied as links, never followed."""
    source = Path(source_dir)
    if not source.is_absolute() or not source.is_dir():
        raise Failure(f"source_dir {source_dir!r} is not an absolute path to a directory")
    origin = dest.with_name(dest.name + ".from")
    try:
        if dest.is_dir() and origin.read_text() == source_dir:
            return
    except OSError:
        pass
    print(f"preview: copying {source_dir} into {dest}", flush=True)
    fresh = dest.with_name(dest.name + ".new")
    for path in (fresh, dest):
        if path.exists():
            shutil.rmtree(path)
    shutil.copytree(source, fresh, symlinks=True)
    for root, _dirs, files in os.walk(fresh):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_IWUSR)
    os.replace(fresh, dest)
    origin.write_text(source_dir)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _answers(port: int, timeout: float) -> bool:
    """True if http://127.0.0.1:port/ answers with any HTTP status (no proxy, unlike urllib)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _preview_env(environ: dict[str, str], env: Env, port: int) -> dict[str, str]:
    child_env = {k: v for k, v in environ.items() if k in PASS_ENV or k.startswith("LC_")}
    child_env.update({k: environ.get(k, "") for k in PREVIEW_INFO})
    child_env.update({MARKER: str(env.env_dir), "PORT": str(port)})
    return child_env


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise Failure(
                f"the preview exited with status {proc.returncode} "
                f"before answering on port {port}; "
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure(
                f"the preview did not answer on http://127.0.0.1:{port}/ within {timeout:g} s; "
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        if _answers(port, min(2.0, remaining)):
            return
        time.sleep(POLL)


def start(env: Env, environ: dict[str, str]) -> None:
    """Stop a leftover, start the supervisor detached, and wait until the preview answers HTTP."""
    port = int(environ["PREVIEW_PORT"])
    timeout = float(environ.get("PREVIEW_READY_TIMEOUT") or 60)
    env.env_dir.mkdir(parents=True, exist_ok=True)
    stop(env)
    if _port_in_use(port):
        raise Failure(f"port {port} on 127.0.0.1 is already in use by another process")
    cwd = env.env_dir
    if environ.get("PREVIEW_SOURCE_DIR"):
        copy_source(environ["PREVIEW_SOURCE_DIR"], env.source)
        cwd = env.source
    elif environ.get("PREVIEW_GIT_URL"):
        checkout(
            environ["PREVIEW_GIT_URL"],
            environ.get("PREVIEW_GIT_SHA", ""),
            env.checkout,
            environ.get("PREVIEW_PR_NUMBER", ""),
        )
        cwd = env.checkout
    if env.log_file.exists():
        os.replace(env.log_file, env.log_file.with_name(env.log_file.name + ".1"))
    with open(env.log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, SCRIPT, "supervise", str(env.env_dir)],
            cwd=cwd,
            env=_preview_env(environ, env, port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,
        )
    _write_pid(env.pid_file, proc.pid)
    try:
        _wait_ready(proc, port, timeout, env.log_file)
    except BaseException:
        stop(env)
        raise
    print(f"preview: answering on http://127.0.0.1:{port}/ (supervisor pid {proc.pid}, log {env.log_file})", flush=True)


# The supervisor: leader of the preview's process group.


def _log(message: str) -> None:
    print(f"[supervisor {time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _wait_child(child: subprocess.Popen, trigger) -> None:
    child.wait()
    trigger(f"the server exited with status {child.returncode}")


def _wait_lock(path: str, trigger) -> None:
    """Block until a shared flock on path is granted, i.e. the lifetime owner's exclusive lock is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as exc:
        trigger(f"lifetime lock {path}: {exc.strerror}")
        return
    trigger(f"no process holds the lifetime lock {path} any more")


def supervise(env_dir: str) -> int:
    """Run the server as a child; stop the group on a signal, its exit or the lifetime lock's release."""
    env = Env.from_dir(env_dir)
    _write_pid(env.pid_file, os.getpid())  # also when `start` was killed before writing it
    wake_r, wake_w = os.pipe()
    reasons: list[str] = []

    def trigger(reason: str) -> None:
        reasons.append(reason)
        os.write(wake_w, b"x")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: trigger(f"received {signal.Signals(signum).name}"))
    command = os.environ.get("PREVIEW_COMMAND", "")
    argv = ["/bin/sh", "-c", command] if command else [sys.executable, SCRIPT, "serve"]
    _log(f"starting {'the command' if command else 'the built-in page server'} on port {os.environ['PORT']}")
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)
    threading.Thread(target=_wait_child, args=(child, trigger), daemon=True).start()
    if os.environ.get("PREVIEW_LIFETIME_LOCK"):
        lock = os.environ["PREVIEW_LIFETIME_LOCK"]
        threading.Thread(target=_wait_lock, args=(lock, trigger), daemon=True).start()
    os.read(wake_r, 1)
    _log(f"stopping: {reasons[0]}")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    me, pgid = os.getpid(), os.getpgrp()
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while (others := [p for p in _group_members(pgid) if p != me]) and time.monotonic() < deadline:
        time.sleep(POLL)
    for pid in others:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        child.wait(timeout=KILL_WAIT)
    except subprocess.TimeoutExpired:
        pass
    _log("stopped")
    if not reasons[0].startswith("the server exited") or child.returncode is None:
        return 0
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


# The built-in page server.


def page(repository: str, pr_number: str, head_ref: str, sha: str) -> str:
    """The built-in server's HTML page; every value is escaped (head_ref and repository are user text)."""
    e = html.escape
    pr_url = f"https://github.com/{quote(repository)}/pull/{quote(pr_number)}"
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Preview of {e(repository)} #{e(pr_number)}</title></head>
<body>
<h1>Preview of {e(repository)} #{e(pr_number)}</h1>
<dl>
<dt>Repository</dt><dd>{e(repository)}</dd>
<dt>Pull request</dt><dd><a href="{e(pr_url)}">#{e(pr_number)}</a></dd>
<dt>Head ref</dt><dd>{e(head_ref)}</dd>
<dt>Commit</dt><dd><code>{e(sha)}</code></dd>
</dl>
</body>
</html>
"""


def serve() -> None:
    """Serve the page on 127.0.0.1:$PORT, and "ok" on /healthz."""
    environ = os.environ
    body = page(
        environ.get("PREVIEW_REPOSITORY", ""),
        environ.get("PREVIEW_PR_NUMBER", ""),
        environ.get("PREVIEW_HEAD_REF", ""),
        environ.get("PREVIEW_GIT_SHA", ""),
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "ghapp-preview"

        def do_GET(self) -> None:
            self._reply(send_body=True)

        def do_HEAD(self) -> None:
            self._reply(send_body=False)

        def _reply(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                status, ctype, content = 200, "text/plain; charset=utf-8", b"ok"
            elif path in ("/", "/index.html"):
                status, ctype, content = 200, "text/html; charset=utf-8", body
            else:
                status, ctype, content = 404, "text/plain; charset=utf-8", b"not found"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if send_body:
                self.wfile.write(content)

    server = ThreadingHTTPServer(("127.0.0.1", int(environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    try:
        if command == "supervise" and len(argv) == 3:
            return supervise(argv[2])
        if command == "serve":
            serve()
            return 0
        if command not in ("init", "start", "stop", "remove"):
            print("usage: preview.py init|start|stop|remove (settings in PREVIEW_* variables)", file=sys.stderr)
            return 2
        env = Env.from_dir(os.environ.get("PREVIEW_ENV_DIR", ""), os.environ.get("PREVIEW_NAME", ""))
        if command == "init":
            env.env_dir.mkdir(parents=True, exist_ok=True)
        elif command == "start":
            signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so an interrupted start stops what it started
            start(env, dict(os.environ))
        elif command == "stop":
            stop(env)
        else:
            remove(env)
    except Failure as exc:
        print(f"preview.py {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"preview.py {command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
