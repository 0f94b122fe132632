"""The Terraform runner on real Terraform: init once per module content, workspaces, environment hygiene,
progress from -json events, interruption of the whole process group."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil

import asyncpg
import pytest

from ghapp import db
from ghapp.config import Settings
from ghapp.core.contract import Action
from ghapp.terraform import ModuleInputs, Terraform, find_binary, module_digest
from tests.conftest import ROOT, SCRIPTED_MODULE
from tests.support import fake_sha, processes_with, wait_for

PG_MODULE = ROOT / "tests" / "modules" / "pgstate"
PROBE_MODULE = """
variable "environment_name" { type = string }
resource "terraform_data" "probe" {
  input = var.environment_name
  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = "env > \\"$OUT\\""
    environment = { OUT = "${path.root}/env-${var.environment_name}.txt" }
  }
}
output "preview_url" { value = "http://${var.environment_name}/" }
output "secret_thing" {
  value     = "hidden"
  sensitive = true
}
"""


def inputs(n: int = 1, sha: str | None = None) -> ModuleInputs:
    return ModuleInputs(
        environment_id=n,
        environment_name=f"pr-{n}-repo-{n}",
        repository="acme/repo",
        pr_number=n,
        git_sha=sha or fake_sha(n),
        head_ref="feature/x",
    )


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "module"
    shutil.copytree(SCRIPTED_MODULE, path)
    return path


def runner(module, tmp_path, terraform_bin, **kw) -> Terraform:
    return Terraform(module, tmp_path / "data", terraform_bin, **kw)


class Lines:
    def __init__(self):
        self.lines: list[str] = []
        self.progress: list[tuple[int, int | None, str | None]] = []

    def __call__(self, line, progress, changed):
        self.lines.append(line)
        if changed:
            self.progress.append((progress.done, progress.total, progress.current))


async def test_apply_reports_progress_outputs_and_destroy(module, tmp_path, terraform_bin):
    tf = runner(module, tmp_path, terraform_bin)
    seen = Lines()
    result = await tf.run(Action.APPLY, inputs(), seen)
    assert result.ok, seen.lines
    assert result.progress.outputs == {"preview_url": "http://pr-1-repo-1.preview.test/", "sha": fake_sha(1)}
    assert result.progress.done == result.progress.total == 2
    assert seen.progress[0][1] == 2 and seen.progress[-1] == (2, 2, None)
    assert any(p[2] and p[2].startswith("terraform_data.step") for p in seen.progress)
    assert "Apply complete! Resources: 2 added, 0 changed, 0 destroyed." in seen.lines

    destroyed = Lines()
    result = await tf.run(Action.DESTROY, inputs(), destroyed)
    assert result.ok and "Destroy complete! Resources: 2 destroyed." in destroyed.lines


@pytest.fixture
def counting_terraform(tmp_path, terraform_bin):
    """A wrapper that records each Terraform subcommand, then runs the real Terraform."""
    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "terraform-wrapper"
    wrapper.write_text(
        f'#!/bin/sh\necho "$1 start $(date +%s%N)" >> "{calls}"\n"{terraform_bin}" "$@"\nrc=$?\n'
        f'echo "$1 end $(date +%s%N)" >> "{calls}"\nexit $rc\n'
    )
    wrapper.chmod(0o755)

    def started() -> list[str]:
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [line.split()[0] for line in lines if line.split()[1] == "start"]

    return wrapper, started, calls


async def test_init_runs_once_per_module_content(module, tmp_path, counting_terraform):
    binary, calls, _ = counting_terraform
    tf = runner(module, tmp_path, str(binary))
    results = await asyncio.gather(*(tf.run(Action.APPLY, inputs(n), Lines()) for n in range(1, 4)))
    assert all(r.ok for r in results)
    assert calls().count("init") == 1
    assert calls().count("apply") == 3

    # a restart (a new runner) with the same module content does not init again
    again = runner(module, tmp_path, str(binary))
    assert (await again.run(Action.APPLY, inputs(1), Lines())).ok
    assert calls().count("init") == 1

    (module / "extra.tf").write_text('output "extra" { value = "yes" }\n')
    result = await again.run(Action.APPLY, inputs(1), Lines())
    assert result.ok and result.progress.outputs["extra"] == "yes"
    assert calls().count("init") == 2
    assert (tf.workdir / ".ghapp-module-digest").read_text() == module_digest(module)
    # the state of the other workspaces survived the new content
    assert (tf.workdir / "terraform.tfstate.d" / "pr-2-repo-2" / "terraform.tfstate").is_file()


async def test_shared_backend_workspaces_are_created_one_at_a_time(tmp_path, counting_terraform, database_url):
    """With `backend "pg"` (state in the app's database through PG_CONN_STR, as the state role that may not create
    anything) concurrent workspace creation races in Terraform itself, so the runner creates workspaces one at a
    time."""
    module = tmp_path / "pg-module"
    shutil.copytree(PG_MODULE, module)
    binary, calls, log = counting_terraform
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        await db.migrate(pool)
        role = await db.state_backend(pool, database_url, Settings(database_url=database_url))
    finally:
        await pool.close()
    assert role and role.url
    tf = runner(module, tmp_path, str(binary), state_url=role.url)
    results = await asyncio.gather(*(tf.run(Action.APPLY, inputs(n), Lines()) for n in range(1, 6)))
    assert all(r.ok for r in results), [r.error for r in results]
    assert calls().count("workspace") >= 1 + 5, "one `workspace list`, a `workspace new` per environment"
    spans, open_at = [], None
    for word, edge, stamp in (line.split() for line in log.read_text().splitlines()):
        if word == "workspace":
            if edge == "start":
                assert open_at is None, "two workspace commands overlapped"
                open_at = int(stamp)
            else:
                spans.append((open_at, int(stamp)))
                open_at = None
    assert len(spans) == calls().count("workspace")
    conn = await asyncpg.connect(database_url)
    try:
        names = {r["name"] for r in await conn.fetch("SELECT name FROM terraform_remote_state.states")}
    finally:
        await conn.close()
    assert {f"pr-{n}-repo-{n}" for n in range(1, 6)} <= names


async def test_local_backend_needs_no_workspace_command(module, tmp_path, counting_terraform):
    binary, calls, _ = counting_terraform
    tf = runner(module, tmp_path, str(binary))
    results = await asyncio.gather(*(tf.run(Action.APPLY, inputs(n), Lines()) for n in range(1, 4)))
    assert all(r.ok for r in results)
    assert calls().count("workspace") == 1, "only the `workspace list` of prepare()"
    states = sorted(p.parent.name for p in (tf.workdir / "terraform.tfstate.d").glob("*/terraform.tfstate"))
    assert states == ["pr-1-repo-1", "pr-2-repo-2", "pr-3-repo-3"]


async def test_parallel_runs_in_separate_workspaces(module, tmp_path, terraform_bin):
    tf = runner(module, tmp_path, terraform_bin)
    results = await asyncio.gather(*(tf.run(Action.APPLY, inputs(n), Lines()) for n in range(1, 9)))
    assert all(r.ok for r in results)
    assert [r.progress.outputs["sha"] for r in results] == [fake_sha(n) for n in range(1, 9)]
    states = sorted(p.parent.name for p in (tf.workdir / "terraform.tfstate.d").glob("*/terraform.tfstate"))
    assert states == sorted(f"pr-{n}-repo-{n}" for n in range(1, 9))


async def test_environment_hygiene_and_withheld_secrets(tmp_path, terraform_bin, monkeypatch):
    module = tmp_path / "probe"
    module.mkdir()
    (module / "main.tf").write_text(PROBE_MODULE)
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_PRIVATE_KEY", "GHAPP_ADMIN_TOKEN", "DATABASE_URL"):
        monkeypatch.setenv(name, f"do-not-leak-{name}")
    monkeypatch.setenv("TF_VAR_operator_input", "kept")
    monkeypatch.setenv("TF_WORKSPACE", "stale-value")
    tf = runner(module, tmp_path, terraform_bin, state_url="postgresql://db/x", extra_env={"EXTRA": "1"})
    seen = Lines()
    result = await tf.run(Action.APPLY, inputs(7), seen)
    assert result.ok
    assert result.progress.outputs == {"preview_url": "http://pr-7-repo-7/"}, "sensitive outputs are not shown"

    env = dict(
        line.split("=", 1) for line in (tf.workdir / "env-pr-7-repo-7.txt").read_text().splitlines() if "=" in line
    )
    assert not [v for v in env.values() if "do-not-leak" in v]
    assert env["TF_WORKSPACE"] == "pr-7-repo-7"
    assert env["TF_IN_AUTOMATION"] == "1" and env["TF_INPUT"] == "0" and env["CHECKPOINT_DISABLE"] == "1"
    assert env["PG_CONN_STR"] == "postgresql://db/x" and env["EXTRA"] == "1"
    assert env["PG_SKIP_SCHEMA_CREATION"] == env["PG_SKIP_TABLE_CREATION"] == env["PG_SKIP_INDEX_CREATION"] == "true"
    assert env["TF_VAR_operator_input"] == "kept"
    assert env["TF_VAR_head_ref"] == "feature/x" and env["TF_VAR_environment_id"] == "7"
    config = (tmp_path / "data" / "terraform" / "terraformrc").read_text()
    assert "disable_checkpoint = true" in config
    assert not [line for line in seen.lines if "problems with the CLI configuration" in line]


async def test_repository_inputs_never_override_the_operators_or_the_contracts(tmp_path, terraform_bin, monkeypatch):
    """A pull request's `.github/preview.yml` inputs reach the module, but routing, access or domains the operator
    set (TF_VAR_* passed by GHAPP_TERRAFORM_ENV) and the contract's inputs are not a pull request's to change."""
    module = tmp_path / "probe"
    module.mkdir()
    (module / "main.tf").write_text(PROBE_MODULE)
    monkeypatch.setenv("TF_VAR_auth_mode", "external_auth_filter")
    tf = runner(module, tmp_path, terraform_bin)
    hostile = dataclasses.replace(
        inputs(7), extra={"auth_mode": "none", "git_sha": "0" * 40, "sleeping": "true", "replicas": "2"}
    )
    assert (await tf.run(Action.APPLY, hostile, Lines())).ok
    env = dict(
        line.split("=", 1) for line in (tf.workdir / "env-pr-7-repo-7.txt").read_text().splitlines() if "=" in line
    )
    assert env["TF_VAR_auth_mode"] == "external_auth_filter"
    assert env["TF_VAR_git_sha"] == fake_sha(7) and env["TF_VAR_sleeping"] == "false"
    assert env["TF_VAR_replicas"] == "2"


async def test_operator_pg_conn_str_wins(tmp_path, terraform_bin, monkeypatch):
    monkeypatch.setenv("PG_CONN_STR", "postgresql://operator/own")
    tf = runner(tmp_path, tmp_path, terraform_bin, state_url="postgresql://db/x")
    assert tf.base_env()["PG_CONN_STR"] == "postgresql://db/x", "not listed in GHAPP_TERRAFORM_ENV: not passed"
    tf = runner(tmp_path, tmp_path, terraform_bin, state_url="postgresql://db/x", allow_env=("PG_CONN_STR",))
    assert tf.base_env()["PG_CONN_STR"] == "postgresql://operator/own"
    assert "PG_SKIP_TABLE_CREATION" not in tf.base_env(), "the operator's own database: Terraform creates its table"


async def test_terraform_environment_is_an_allowlist(tmp_path, terraform_bin, monkeypatch):
    """Finding 5: Terraform inherited the app's whole environment but four names (AWS keys, GHAPP_* secrets...)."""
    for name in ("AWS_SECRET_ACCESS_KEY", "GHAPP_SOMETHING_SECRET", "GITHUB_CLIENT_SECRET", "SSH_AUTH_SOCK"):
        monkeypatch.setenv(name, "do-not-leak")
    monkeypatch.setenv("TF_VAR_operator_input", "kept")
    monkeypatch.setenv("TF_LOG", "")
    monkeypatch.setenv("HOME", "/root-home-of-the-app")
    env = runner(tmp_path, tmp_path, terraform_bin).base_env()
    assert "do-not-leak" not in env.values() and env["TF_VAR_operator_input"] == "kept" and "TF_LOG" in env
    assert env["HOME"] != "/root-home-of-the-app" and env["PATH"].endswith("/usr/bin:/bin")
    env = runner(tmp_path, tmp_path, terraform_bin, allow_env=("AWS_*",)).base_env()
    assert env["AWS_SECRET_ACCESS_KEY"] == "do-not-leak" and "TF_VAR_operator_input" not in env
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "do-not-leak")
    assert "GITHUB_PRIVATE_KEY" not in runner(tmp_path, tmp_path, terraform_bin, allow_env=("*",)).base_env()


def test_settings_read_the_allowlist():
    assert Settings.from_env({}, dotenv=None).terraform_env_allow == ("TF_VAR_*",)
    assert Settings.from_env({"GHAPP_TERRAFORM_ENV": "AWS_*, TF_VAR_*"}, dotenv=None).terraform_env_allow == (
        "AWS_*",
        "TF_VAR_*",
    )


async def test_cancelling_a_run_interrupts_the_whole_process_group(module, tmp_path, terraform_bin):
    delay = str(600 + os.getpid() % 997)  # a command line no other test runs (an integer: Terraform rewrites numbers)
    tf = runner(module, tmp_path, terraform_bin, extra_env={"TF_VAR_delay": delay}, interrupt_grace=5)
    seen = Lines()
    task = asyncio.create_task(tf.run(Action.APPLY, inputs(), seen))
    await wait_for(lambda: _has(seen, "Provisioning with 'local-exec'"), what="provisioner running")
    await wait_for(lambda: _sleepers(delay), what="the provisioner's sleep")
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started < 5
    assert not processes_with(str(tmp_path / "data")), "terraform left running"
    assert not await _sleepers(delay), "the provisioner's children were left running"


async def _has(seen: Lines, text: str):
    return any(text in line for line in seen.lines)


async def _sleepers(delay: str):
    return processes_with(f"sleep {delay}")


async def test_failed_apply_reports_the_error(module, tmp_path, terraform_bin):
    marker = tmp_path / "fail"
    marker.touch()
    tf = runner(module, tmp_path, terraform_bin, extra_env={"TF_VAR_fail_marker": str(marker)})
    result = await tf.run(Action.APPLY, inputs(), Lines())
    assert not result.ok and result.exit_code == 1
    assert "local-exec provisioner error" in result.error and "exit status 3" in result.error


def test_find_binary(monkeypatch, tmp_path):
    assert os.path.basename(find_binary(None)) in ("terraform", "ghapp-terraform")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary(None).endswith("ghapp-terraform"), "falls back to the bundled Terraform"
    with pytest.raises(Exception, match="GHAPP_TERRAFORM_BIN"):
        find_binary("/nonexistent/terraform")


async def test_cancelling_during_init_leaves_no_terraform(module, tmp_path, terraform_bin):
    """A run superseded or timed out while the module is still being initialised stops `init` too."""
    wrapper = tmp_path / "terraform-slow-init"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = init ]; then sleep 30; fi\nexec "{terraform_bin}" "$@"\n')
    wrapper.chmod(0o755)
    tf = runner(module, tmp_path, str(wrapper), interrupt_grace=2)
    task = asyncio.create_task(tf.run(Action.APPLY, inputs(), Lines()))
    await wait_for(lambda: _running(str(wrapper)), what="init running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert processes_with(str(wrapper)) == [], "init was left running"


async def _running(text: str):
    return processes_with(text)


async def test_other_modules_get_their_own_work_dirs(module, tmp_path, terraform_bin):
    """A catalog module has one work dir for every environment; a repository's module one per environment (its
    local state must not be shared by two pull requests), which a destroy still finds after the checkout is
    gone, and which goes with the environment's workspace."""
    catalog = tmp_path / "catalog"
    shutil.copytree(module, catalog / "web")
    tf = runner(module, tmp_path, terraform_bin, catalog=catalog)
    assert (await tf.run(Action.APPLY, inputs(1), Lines(), module=catalog / "web")).ok
    assert (await tf.run(Action.APPLY, inputs(2), Lines(), module=catalog / "web")).ok
    shared = tmp_path / "data" / "terraform" / "catalog" / "web"
    assert sorted(p.name for p in (shared / "terraform.tfstate.d").iterdir()) == ["pr-1-repo-1", "pr-2-repo-2"]
    assert not tf.workdir.exists()  # the operator's module was never needed

    checkouts = {n: tmp_path / "checkouts" / fake_sha(n) / "infra" for n in (3, 4)}
    for path in checkouts.values():
        shutil.copytree(module, path)
    for n, path in checkouts.items():
        assert (await tf.run(Action.APPLY, inputs(n), Lines(), module=path)).ok
    own = {n: tmp_path / "data" / "terraform" / "repository" / f"pr-{n}-repo-{n}" for n in checkouts}
    for n, workdir in own.items():
        assert [p.name for p in (workdir / "terraform.tfstate.d").iterdir()] == [f"pr-{n}-repo-{n}"]

    shutil.rmtree(checkouts[3])  # the commit's checkout was deleted; the preview must still be destroyable
    fresh = runner(module, tmp_path, terraform_bin, catalog=catalog)  # after a restart, too
    destroyed = Lines()
    assert (await fresh.run(Action.DESTROY, inputs(3), destroyed, module=checkouts[3])).ok, destroyed.lines
    assert "Destroy complete! Resources: 2 destroyed." in destroyed.lines
    await fresh.delete_workspace("pr-3-repo-3", checkouts[3])
    assert not own[3].exists() and own[4].is_dir()
    assert (await fresh.run(Action.DESTROY, inputs(1), Lines(), module=catalog / "web")).ok
    await fresh.delete_workspace("pr-1-repo-1", catalog / "web")
    assert [p.name for p in (shared / "terraform.tfstate.d").iterdir()] == ["pr-2-repo-2"]
