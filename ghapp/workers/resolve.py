"""Resolving an environment before it is applied: which configuration, module and inputs, or why not now.

The reconciler asks `Resolver.resolve(env)` before every apply. Three steps, each its own collaborator:
1. `ConfigurationReader.read(env)`: the effective `.github/preview.yml` (the repository's, else the
   organisation's, else the operator's defaults), or `Held(INVALID)` when the file is broken;
2. `RuleChecker.check(env, config)`: the deploy rules (manual, drafts, branches, labels, paths, wait_for), or a
   `Held` that says why not now;
3. `Planner.plan(env, config, origin)`: the module, its inputs and the source checkout.
The defaults below are ghapp without a configuration file: the operator's module and inputs, no rule."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from ghapp.core.model import Environment
from ghapp.core.repoconfig import ConfigOrigin, Held, Plan, RepoConfig


@dataclasses.dataclass(frozen=True)
class RepositoryFile:
    text: str
    blob_sha: str


class RepositoryFiles(Protocol):
    """A repository's content at a commit or branch: GitHub's contents and tarball API, or a local directory (the
    demo's sample repository)."""

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        """The file at `ref` (None: the default branch); None if there is no such file."""
        ...

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        """Write the repository's archive (gzip'd tar) at `sha` to the file `destination`."""
        ...


class ConfigurationReader:
    async def read(self, env: Environment) -> tuple[RepoConfig, ConfigOrigin] | Held:
        return RepoConfig(), ConfigOrigin()


class RuleChecker:
    async def check(self, env: Environment, config: RepoConfig, origin: ConfigOrigin) -> Held | None:
        return None


class Planner:
    async def plan(self, env: Environment, config: RepoConfig, origin: ConfigOrigin) -> Plan | Held:
        return Plan(config=config, origin=origin)


class Resolver:
    def __init__(
        self,
        configuration: ConfigurationReader | None = None,
        rules: RuleChecker | None = None,
        planner: Planner | None = None,
    ) -> None:
        self.configuration = configuration or ConfigurationReader()
        self.rules = rules or RuleChecker()
        self.planner = planner or Planner()

    async def resolve(self, env: Environment) -> Plan | Held:
        read = await self.configuration.read(env)
        if isinstance(read, Held):
            return read
        config, origin = read
        held = await self.rules.check(env, config, origin)
        if held is not None:
            return held
        return await self.planner.plan(env, config, origin)
