"""Resolving an environment before it is applied: which configuration, module and inputs, or why not now.

The reconciler asks `Resolver.resolve(env)` before every apply. Three steps, each its own collaborator:
1. `ConfigurationReader.read(env)`: the effective `.github/preview.yml` (the repository's, else the
   organisation's, else the operator's defaults), or `Held(INVALID)` when the file is broken;
2. `RuleChecker.check(env, config)`: the deploy rules (manual, drafts, branches, labels, paths, wait_for), or a
   `Held` that says why not now;
3. `Planner.plan(env, config, origin)`: the module, its inputs and the source checkout.
The defaults below are ghapp without a configuration file: the operator's module and inputs, no rule."""

from __future__ import annotations

from ghapp.core.model import Environment
from ghapp.core.repoconfig import ConfigOrigin, Held, Plan, RepoConfig


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
