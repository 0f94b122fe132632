"""Running Terraform: argv only, a clean environment, `init` once per module content, a workspace per environment.

A module is copied to a work dir and initialised once for each distinct content; every run then only sets
`TF_WORKSPACE`. The operator's module (GHAPP_TERRAFORM_MODULE) works in `<data>/terraform/<module name>/`, a catalog
module (GHAPP_MODULES/<name>) in `<data>/terraform/catalog/<name>/`, and a module from a repository in
`<data>/terraform/repository/<environment name>/`: one per environment, since the local backend keeps its state in
the work dir and two pull requests' commits must not share one. Cancelling a run (the task awaiting `run`)
interrupts Terraform's whole process group: SIGINT (Terraform saves state), then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from ghapp.core.contract import Action
from ghapp.core.tfevents import Progress, parse_line
from ghapp.isolation import Redactor, RunUser, reachable_tools, traverse_only

log = logging.getLogger(__name__)

# Terraform's environment is an allowlist: these from the app's environment, what ghapp sets itself (the contract's
# TF_VAR_*, TF_WORKSPACE, the CLI configuration, the state role's PG_CONN_STR), and what the operator lists in
# GHAPP_TERRAFORM_ENV.
PASSED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
TERRAFORM_OWN = (
    "TF_LOG",
    "TF_LOG_CORE",
    "TF_LOG_PROVIDER",
    "TF_LOG_PATH",
    "TF_PLUGIN_CACHE_DIR",
    "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE",
    "TF_REGISTRY_DISCOVERY_RETRY",
    "TF_REGISTRY_CLIENT_TIMEOUT",
    "TF_STATE_PERSIST_INTERVAL",
)
# Never passed, whatever GHAPP_TERRAFORM_ENV says: the app's own credentials.
WITHHELD = (
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_CLIENT_SECRET",
    "GHAPP_ADMIN_TOKEN",
    "DATABASE_URL",
)
# With the app's PG_CONN_STR (the state role), Terraform's pg backend finds its schema, table and index made by the
# app (migration 006) and may not create them.
SKIP_CREATION = {
    "PG_SKIP_SCHEMA_CREATION": "true",
    "PG_SKIP_TABLE_CREATION": "true",
    "PG_SKIP_INDEX_CREATION": "true",
}
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_IGNORED_FILES = shutil.ignore_patterns(
    ".terraform", "terraform.tfstate*", "*.tfstate*", ".terraform.lock.hcl.bak", "__pycache__", "previews"
)
_PR_SET_PDEATHSIG = 1


class TerraformError(RuntimeError):
    """Terraform could not be prepared (init failed, binary missing); the message says why."""


@dataclasses.dataclass(frozen=True)
class ModuleInputs:
    """The module contract's inputs for one environment."""

    environment_id: int
    environment_name: str
    repository: str
    pr_number: int
    git_sha: str
    head_ref: str
    source_dir: str | None = None  # the PR's code at git_sha, read-only (`source: true`)
    sleeping: bool = False  # scale to nothing, keep everything
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the configuration's inputs, encoded

    def tf_vars(self) -> dict[str, str]:
        """The contract's inputs as `TF_VAR_*` (the configuration's inputs are `extra`, see `Terraform.run`)."""
        contract = {
            "environment_id": self.environment_id,
            "environment_name": self.environment_name,
            "repository": self.repository,
            "pr_number": self.pr_number,
            "git_sha": self.git_sha,
            "head_ref": self.head_ref,
            "sleeping": "true" if self.sleeping else "false",
        }
        if self.source_dir is not None:
            contract["source_dir"] = self.source_dir
        return {f"TF_VAR_{k}": str(v) for k, v in contract.items()}


@dataclasses.dataclass
class RunResult:
    exit_code: int
    progress: Progress

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def error(self) -> str | None:
        if self.ok:
            return None
        return "\n".join(self.progress.errors) or f"terraform exited with code {self.exit_code}"


class LogLine(str):
    """A line of a run's log that knows where it came from: `terraform` (ghapp's and Terraform's own lines) or
    `provisioner` (what a provisioner, and so the preview's code, printed: never shown on GitHub)."""

    source: str = "terraform"

    @classmethod
    def of(cls, text: str, source: str) -> LogLine:
        line = cls(text)
        line.source = source
        return line


LineHandler = Callable[[str, Progress, bool], Awaitable[None] | None]


def allowed(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def find_binary(configured: str | None) -> str:
    """`GHAPP_TERRAFORM_BIN`, else `terraform` on PATH, else the bundled `ghapp-terraform`."""
    if configured:
        found = shutil.which(configured)
        if not found:
            raise TerraformError(f"GHAPP_TERRAFORM_BIN={configured!r} is not an executable")
        return found
    for candidate in ("terraform", str(Path(sys.executable).with_name("ghapp-terraform")), "ghapp-terraform"):
        if found := shutil.which(candidate):
            return found
    raise TerraformError(
        "no Terraform found: install one, set GHAPP_TERRAFORM_BIN, or reinstall ghapp (it ships ghapp-terraform)"
    )


def module_digest(module: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in module.rglob("*") if p.is_symlink() or p.is_file()):
        rel = path.relative_to(module)
        if rel.parts[0] in (".terraform", "previews", "__pycache__") or "tfstate" in rel.name:
            continue
        # A link counts as where it points, never as what it points to (a repository's module is not trusted).
        content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        h.update(str(rel).encode() + b"\0" + content + b"\0")
    return h.hexdigest()


def _child_setup() -> None:
    """In Terraform's process, before exec: die with the app; take SIGINT even if the app was started ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


@dataclasses.dataclass
class WorkDir:
    """A module's prepared copy: where Terraform runs, the content it was initialised for, its known workspaces."""

    module: Path
    path: Path
    per_environment: bool = False  # a repository's module: removed with its environment
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    workspace_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    digest: str | None = None
    workspaces: set[str] = dataclasses.field(default_factory=set)


class Terraform:
    def __init__(
        self,
        module: Path,
        data_dir: Path,
        binary: str,
        extra_env: Mapping[str, str] | None = None,
        state_url: str | None = None,
        interrupt_grace: float = 10.0,
        allow_env: tuple[str, ...] = ("TF_VAR_*",),
        run_as: RunUser | None = None,
        redact: Redactor | None = None,
        catalog: Path | None = None,
    ):
        self.module = module
        self.catalog = catalog  # GHAPP_MODULES: a module in it is shared by every environment that names it
        self.binary = binary
        self.root = data_dir / "terraform"
        self.workdir = self.root / module.name
        self._workdirs: dict[Path, WorkDir] = {}
        self.extra_env = dict(extra_env or {})
        self.state_url = state_url  # PG_CONN_STR: the state role's (ghapp/db/state_role.py), never the app's URL
        self.interrupt_grace = interrupt_grace
        self.allow_env = tuple(allow_env)
        self.run_as = run_as
        self.redact = redact or Redactor()

    def base_env(self) -> dict[str, str]:
        """The allowlisted environment of every Terraform process (see PASSED, TERRAFORM_OWN, GHAPP_TERRAFORM_ENV)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in WITHHELD and (k in PASSED or k in TERRAFORM_OWN or allowed(k, self.allow_env))
        }
        env.pop("TF_WORKSPACE", None)
        env.update(
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
            TF_CLI_CONFIG_FILE=str(self.root / "terraformrc"),
            PATH=os.pathsep.join([str(Path(sys.executable).parent), SYSTEM_PATH]),
            HOME=str(self.root / "home"),
            TMPDIR=str(self.root / "tmp"),
        )
        env.setdefault("LANG", "C.UTF-8")
        if self.state_url and "PG_CONN_STR" not in env:  # the operator's own PG_CONN_STR, if passed, wins
            env["PG_CONN_STR"] = self.state_url
            env.update(SKIP_CREATION)  # the app made the schema and table; the state role may not
        env.update(self.extra_env)
        return env

    def _workdir_path(self, module: Path | None, environment_name: str) -> tuple[Path, bool]:
        """Where `module` (None: the operator's) runs for one environment, and whether that is the environment's
        alone (see the module docstring)."""
        module = module or self.module
        if module == self.module:
            return self.workdir, False
        if self.catalog is not None and module.parent == self.catalog:
            return self.root / "catalog" / module.name, False
        return self.root / "repository" / environment_name, True

    def same_workdir(self, a: Path | None, b: Path | None, environment_name: str) -> bool:
        """Whether two modules run in one work dir for this environment (so a local state follows the change)."""
        return self._workdir_path(a, environment_name) == self._workdir_path(b, environment_name)

    def workdir_for(self, module: Path | None, environment_name: str) -> WorkDir:
        """The prepared-copy record of `module` (None: the operator's) for one environment."""
        path, per_environment = self._workdir_path(module, environment_name)
        module = module or self.module
        found = self._workdirs.get(path)
        if found is None or found.module != module:
            found = self._workdirs[path] = WorkDir(module, path, per_environment)
        return found

    async def prepare(self, workdir: WorkDir | None = None) -> Path:
        """Copy the module and run `init` if its content changed since the last init; return the work dir. A
        repository's module whose source is gone (a destroy after its checkout was deleted) runs as last prepared."""
        workdir = workdir or self.workdir_for(None, "")
        async with workdir.lock:
            marker = workdir.path / ".ghapp-module-digest"
            if workdir.per_environment and not workdir.module.is_dir() and marker.is_file():
                digest = marker.read_text()
            else:
                digest = await asyncio.to_thread(module_digest, workdir.module)
            if digest == workdir.digest:
                return workdir.path
            if not (marker.is_file() and marker.read_text() == digest):
                await asyncio.to_thread(self._copy_module, workdir)
                self._write_cli_config()
                await asyncio.to_thread(self._hand_over)
                code, out = await self._capture("init", "-input=false", "-no-color", cwd=workdir.path)
                if code != 0:
                    raise TerraformError(f"terraform init failed in {workdir.path}:\n{self.redact(out[-4000:])}")
                marker.write_text(digest)
                log.info("terraform init done for %s (%s)", workdir.module, digest[:12])
            self._write_cli_config()
            await asyncio.to_thread(self._hand_over)
            code, out = await self._capture("workspace", "list", "-no-color", cwd=workdir.path)
            workdir.workspaces = {w.strip(" *") for w in out.splitlines() if w.strip(" *")} if code == 0 else set()
            workdir.digest = digest
            return workdir.path

    def _copy_module(self, workdir: WorkDir) -> None:
        if not workdir.module.is_dir():
            raise TerraformError(f"the Terraform module {workdir.module} does not exist")
        workdir.path.mkdir(parents=True, exist_ok=True)
        for old in workdir.path.iterdir():  # remove the previous content's files, keep .terraform and state
            if old.name not in (
                ".terraform",
                "terraform.tfstate.d",
                "terraform.tfstate",
                "previews",
            ) and not old.name.startswith(".ghapp"):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        shutil.copytree(workdir.module, workdir.path, ignore=_IGNORED_FILES, dirs_exist_ok=True, symlinks=True)

    def _hand_over(self) -> None:
        """The run user owns Terraform's work directories (and nothing else of the app's); without one, they are
        the app's own, 0700."""
        for sub in ("home", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if self.run_as is None:
            return
        traverse_only(self.root)
        reachable_tools(self.binary)
        for top, dirs, files in os.walk(self.root):
            for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
                os.lchown(name, self.run_as.uid, self.run_as.gid)

    def _write_cli_config(self) -> None:
        cache = self.root / "plugin-cache"
        cache.mkdir(parents=True, exist_ok=True)
        (self.root / "terraformrc").write_text(f'disable_checkpoint = true\nplugin_cache_dir = "{cache}"\n')

    async def _capture(self, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> tuple[int, str]:
        proc = await self._spawn(args, env or self.base_env(), cwd)
        try:
            out, _ = await proc.communicate()
        except BaseException:  # cancelled (a superseded or timed-out run): no Terraform is left behind
            await self.interrupt(proc)
            raise
        assert proc.returncode is not None  # communicate() waited for the exit
        return proc.returncode, out.decode(errors="replace")

    async def _spawn(self, args, env, cwd: Path) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup,
            limit=1 << 22,
            **(self.run_as.popen_kwargs() if self.run_as else {}),
        )

    def _shared_backend(self, workdir: Path) -> bool:
        """Whether the module keeps its state in a backend other than the local one (init records its type)."""
        try:
            config = json.loads((workdir / ".terraform" / "terraform.tfstate").read_text())
        except (OSError, ValueError):
            return False  # no backend block: local
        return (config.get("backend") or {}).get("type", "local") != "local"

    async def _ensure_workspace(self, workdir: WorkDir, name: str) -> None:
        """Create workspaces one at a time: concurrent creation races in shared backends (pg: "Already locked for
        workspace creation"). The local backend creates a workspace's directory on first use, race-free, so there
        `TF_WORKSPACE` alone does it and no extra Terraform process is spent."""
        if name in workdir.workspaces or not self._shared_backend(workdir.path):
            return
        async with workdir.workspace_lock:
            if name in workdir.workspaces:
                return
            for attempt in range(5):
                code, out = await self._capture(
                    "workspace",
                    "new",
                    "-no-color",
                    name,
                    cwd=workdir.path,
                    env={**self.base_env(), "TF_WORKSPACE": name},
                )
                if code == 0 or "already exists" in out:
                    workdir.workspaces.add(name)
                    return
                if "locked" not in out.lower():
                    raise TerraformError(f"cannot create workspace {name}:\n{out[-2000:]}")
                await asyncio.sleep(0.2 * (attempt + 1))
            raise TerraformError(f"cannot create workspace {name}: still locked")

    async def delete_workspace(self, name: str, module: Path | None = None) -> None:
        """After a successful destroy: the environment's workspace goes; a repository's module's work dir, which
        belongs to that one environment, goes whole."""
        workdir = self.workdir_for(module, name)
        if workdir.per_environment:
            async with workdir.lock:
                await asyncio.to_thread(shutil.rmtree, workdir.path, True)
                self._workdirs.pop(workdir.path, None)
            return
        if not workdir.path.is_dir():
            return
        async with workdir.workspace_lock:
            code, out = await self._capture(
                "workspace",
                "delete",
                "-no-color",
                name,
                cwd=workdir.path,
                env={**self.base_env(), "TF_WORKSPACE": "default"},
            )
            workdir.workspaces.discard(name)
            if code != 0 and "doesn't exist" not in out:
                log.warning("could not delete workspace %s: %s", name, out.strip()[-500:])

    async def run(
        self, action: Action, inputs: ModuleInputs, on_line: LineHandler, module: Path | None = None
    ) -> RunResult:
        """`apply` or `destroy` one environment; every line goes to `on_line(line, progress, changed)`. `module`: a
        Terraform directory other than the operator's (a catalog module, or a repository's at the commit); a
        destroy must name the module the environment was applied with."""
        workdir = self.workdir_for(module, inputs.environment_name)
        await self.prepare(workdir)
        await self._ensure_workspace(workdir, inputs.environment_name)
        # Precedence: the repository's inputs < the operator's TF_VAR_* (routing, access, domains: never a pull
        # request's to change) < the contract's inputs.
        repository_inputs = {f"TF_VAR_{k}": v for k, v in inputs.extra.items()}
        env = {**repository_inputs, **self.base_env(), **inputs.tf_vars(), "TF_WORKSPACE": inputs.environment_name}
        args = [str(action), "-auto-approve", "-input=false", "-no-color", "-json", "-lock-timeout=60s"]
        progress = Progress()
        proc = await self._spawn(args, env, workdir.path)
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line, event = parse_line(raw.decode(errors="replace"))
                changed = progress.feed(event) if event else False
                if line:
                    source = "provisioner" if event and event.get("type") == "provision_progress" else "terraform"
                    result = on_line(LogLine.of(self.redact(line), source), progress, changed)
                    if asyncio.iscoroutine(result):
                        await result
            code = await proc.wait()
        except BaseException:
            await self.interrupt(proc)
            raise
        progress.errors = [self.redact(e) for e in progress.errors]
        return RunResult(code, progress)

    async def interrupt(self, proc: asyncio.subprocess.Process) -> None:
        """SIGINT to the process group, SIGKILL after the grace period; returns when Terraform has exited."""
        if proc.returncode is not None:
            return
        _killpg(proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self.interrupt_grace)
        except TimeoutError:
            log.warning("terraform (pid %s) ignored SIGINT for %.0fs, killing it", proc.pid, self.interrupt_grace)
        _killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group: provisioner children
        await proc.wait()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
