"""Resolving an environment before it is applied: which configuration, module and inputs, or why not now.

The reconciler asks `Resolver.resolve(env)` before every apply. This base resolver knows only the operator's
defaults (today's behaviour without `.github/preview.yml`); the repository's configuration, its deploy rules and
the source checkout build on it."""

from __future__ import annotations

from ghapp.core.model import Environment
from ghapp.core.repoconfig import Held, Plan


class Resolver:
    async def resolve(self, env: Environment) -> Plan | Held:
        return Plan()
