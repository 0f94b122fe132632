"""The repository configuration steps of resolving an environment (ghapp/workers/resolve.py):
`RepositoryConfiguration` reads `.github/preview.yml` (the repository's, over its organisation's `.github`
repository's), and `ModulePlanner` turns the configuration into the module, inputs and checkout a preview is
applied with."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ghapp.config import Settings
from ghapp.core.access import bounded_access, effective_access, looser_refused
from ghapp.core.contract import Access, Hold
from ghapp.core.model import Environment
from ghapp.core.repoconfig import (
    PATH,
    ConfigOrigin,
    ConfigProblem,
    FileTooLarge,
    Held,
    ModuleRules,
    ParsedFile,
    Plan,
    RepoConfig,
    RepositoryFile,
    RepositoryFiles,
    check_module,
    encode_inputs,
    merge,
    parse,
    repository_matches,
    to_config,
)
from ghapp.schemas import preview_v1
from ghapp.workers.resolve import ConfigurationReader, Planner

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
FORK_MODULE = "a pull request from a fork cannot use a module from its repository"
NOT_ALLOWED = "this ghapp does not allow modules from this repository (GHAPP_REPO_MODULES)"
NO_CHECKOUT = "this ghapp cannot check out the commit"


class Checkouts(Protocol):
    """ghapp/sources.py's `Sources`: a read-only directory of the repository at `sha`."""

    async def checkout(self, env: Environment, sha: str) -> str: ...


def catalog(settings: Settings) -> frozenset[str]:
    """The catalog's module names: the directories in GHAPP_MODULES."""
    try:
        return frozenset(p.name for p in settings.modules_dir.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))
    except OSError:
        return frozenset()


def module_rules(settings: Settings, env: Environment) -> ModuleRules:
    if env.is_fork:
        reason: str | None = FORK_MODULE
    elif not repository_matches(env.repository, settings.repo_modules):
        reason = NOT_ALLOWED
    else:
        reason = None
    return ModuleRules(catalog(settings), reason)


class RepositoryConfiguration(ConfigurationReader):
    """Same-repository pull request: the file at its head commit, except that its `access` is bounded by the base
    branch's (so a pull request cannot open its own preview to the world); a fork's: at the base branch (so a fork
    cannot change how it is deployed). Then the organisation's defaults (`<owner>/.github`, at its default branch) under
    it; neither: the operator's defaults. Without `files` (offline, no GitHub App): the operator's defaults."""

    def __init__(self, settings: Settings, files: RepositoryFiles | None) -> None:
        self.settings = settings
        self.files = files

    async def read(self, env: Environment) -> tuple[RepoConfig, ConfigOrigin] | Held:
        if self.files is None:
            return RepoConfig(), ConfigOrigin()
        owner, _, name = env.repository.partition("/")
        ref = (env.base_ref or None) if env.is_fork else env.desired_sha
        at = ref or "the default branch"
        files: list[tuple[str, RepositoryFile, ConfigOrigin]] = []
        if name.lower() != ".github":
            organization = f"{owner}/.github"
            found = await self._read(env, organization, None)
            if isinstance(found, Held):
                return found
            if found is not None:
                origin = ConfigOrigin("organization", found.blob_sha, "the default branch")
                files.append((f"{organization}: ", found, origin))
        found = await self._read(env, env.repository, ref)
        if isinstance(found, Held):
            return found
        if found is not None:
            files.append(("", found, ConfigOrigin("repository", found.blob_sha, at)))
        if not files:
            return await self._bounded(env, RepoConfig(), ConfigOrigin(), None)
        parsed: list[ParsedFile] = []
        for where, file, origin in files:
            try:
                # bounded (size, nodes, depth), yet milliseconds of CPU: off the event loop
                parsed.append(await asyncio.to_thread(parse, file.raw, preview_v1()))
            except ConfigProblem as e:
                return Held(Hold.INVALID, f"{where}{e}", origin)
        # the module is checked in the file that decides it: the repository's, else the organisation's
        deciding = next((i for i in reversed(range(len(parsed))) if "module" in parsed[i].document), None)
        if deciding is not None:
            try:
                check_module(parsed[deciding], module_rules(self.settings, env))
            except ConfigProblem as e:
                return Held(Hold.INVALID, f"{files[deciding][0]}{e}", files[deciding][2])
        document = merge(parsed[0].document, parsed[1].document) if len(parsed) == 2 else parsed[0].document
        defaults = parsed[0].document if files[0][2].kind == "organization" else None
        return await self._bounded(env, to_config(document), files[-1][2], defaults)

    async def _bounded(
        self, env: Environment, config: RepoConfig, origin: ConfigOrigin, organization: Mapping[str, Any] | None
    ) -> tuple[RepoConfig, ConfigOrigin]:
        """A same-repository pull request's file is read at its head, which its author wrote: its `access` may only
        be as strict as the base branch's file (over the organisation's; neither: the operator's default) or
        stricter. A fork's file is the base branch's already."""
        if env.is_fork or config.access is Access.REPOSITORY:
            return config, origin
        base: Mapping[str, Any] | None = None
        found = await self._read(env, env.repository, env.base_ref or None)
        if isinstance(found, RepositoryFile):
            try:
                base = (await asyncio.to_thread(parse, found.raw, preview_v1())).document
            except ConfigProblem:
                base = None  # the base branch's own file is broken: the organisation's or the operator's word
        granted = merge(organization, base).get("access")
        access = bounded_access(config.access, Access(granted) if granted is not None else None)
        note = looser_refused(config.access, effective_access(access, self.settings.default_access))
        return dataclasses.replace(config, access=access), dataclasses.replace(origin, note=note) if note else origin

    async def _read(self, env: Environment, repository: str, ref: str | None) -> RepositoryFile | None | Held:
        assert self.files is not None
        try:
            return await self.files.read(env, repository, PATH, ref)
        except FileTooLarge as e:
            origin = ConfigOrigin("repository" if repository == env.repository else "organization", None, ref)
            where = "" if repository == env.repository else f"{repository}: "
            return Held(Hold.INVALID, f"{where}{PATH} is {e.size} bytes, too large to read", origin)


class ModulePlanner(Planner):
    """`module: <name>` → GHAPP_MODULES/<name>; `module: {path: dir}` → that directory of the repository's checkout
    at the commit (allowed repositories only, never a fork); `source: true` → `source_dir`, the same checkout.
    `inputs` are encoded for `TF_VAR_`."""

    def __init__(self, settings: Settings, sources: Checkouts | None = None) -> None:
        self.settings = settings
        self.sources = sources

    async def plan(self, env: Environment, config: RepoConfig, origin: ConfigOrigin) -> Plan | Held:
        def invalid(reason: str) -> Held:
            return Held(Hold.INVALID, reason, origin, config)

        checkout = None
        if config.module_path is not None or config.source:
            if self.sources is None or not env.desired_sha:
                what = "module: {path: ...}" if config.module_path is not None else "source: true"
                return invalid(f"{what} needs the commit's code, and {NO_CHECKOUT}")
            checkout = Path(await self.sources.checkout(env, env.desired_sha))
        module: Path | None = None
        if config.module is not None:
            module = self.settings.modules_dir / config.module
            if not _NAME.fullmatch(config.module) or not module.is_dir():
                return invalid(f"module {config.module!r} is not in the operator's catalog")
        elif config.module_path is not None:
            if (reason := module_rules(self.settings, env).repository_module) is not None:
                return invalid(f"module: {{path: ...}} is not allowed: {reason}")
            assert checkout is not None
            root = checkout.resolve()
            module = (root / config.module_path).resolve()
            if not module.is_relative_to(root):
                return invalid(f"module path {config.module_path!r} leaves the repository")
            if not module.is_dir():
                return invalid(f"module path {config.module_path!r} is not a directory at {env.desired_sha}")
        return Plan(
            config=config,
            origin=origin,
            module=str(module) if module is not None else None,
            tf_vars=encode_inputs(config.inputs),
            source_dir=str(checkout) if config.source and checkout is not None else None,
        )
