"""The deploy rules of `.github/preview.yml`, with the look-ups they need on GitHub: the pull request's changed
files for `paths`, the commit's check runs and statuses for `wait_for`. Cheapest first: the rules on what the
events told (manual, drafts, branches, labels) cost nothing, and GitHub is asked only when the configuration has
`paths` or `wait_for`, with conditional requests (the client's ETag cache: an unchanged answer costs no rate
limit)."""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import quote, urlencode

from ghapp.core import rules
from ghapp.core.model import Environment
from ghapp.core.repoconfig import ConfigOrigin, Held, RepoConfig
from ghapp.github.client import GitHubApp
from ghapp.workers.resolve import RuleChecker

log = logging.getLogger(__name__)


class GitHubRuleChecker(RuleChecker):
    """`app` None (offline): the rules that need GitHub (`paths`, `wait_for`) are skipped, with a logged note."""

    def __init__(self, app: GitHubApp | None) -> None:
        self.app = app

    async def check(self, env: Environment, config: RepoConfig, origin: ConfigOrigin) -> Held | None:
        held = rules.held_by_pull(config, rules.PullFacts.of(env))
        if held is None and (config.paths or config.wait_for):
            held = await self._look_up(env, config)
        return None if held is None else dataclasses.replace(held, origin=origin, config=config)

    async def _look_up(self, env: Environment, config: RepoConfig) -> Held | None:
        if self.app is None or env.installation_id is None or env.desired_sha is None:
            log.info("%s: `paths` and `wait_for` are not checked without the GitHub App", env.label)
            return None
        gh = await self.app.installation(env.installation_id, env.repo_id)
        repo = f"/repos/{env.repository}"
        if config.paths and (held := rules.held_by_paths(config, await self._changed_files(gh, repo, env))):
            return held
        if config.wait_for:
            checks = await self._checks(gh, repo, env.desired_sha, config.wait_for)
            return rules.held_by_checks(config.wait_for, env.desired_sha, checks)
        return None

    @staticmethod
    async def _checks(gh, repo: str, sha: str, names: tuple[str, ...]) -> dict[str, rules.Check]:
        """The state of each name on the commit: its check runs, asked for by name (so our own check run changing
        does not spoil the cached answer), and the commit's statuses only for a name no check run has."""
        commit = f"{repo}/commits/{quote(sha, safe='')}"
        runs: list[dict] = []
        for name in names:
            query = urlencode({"check_name": name, "filter": "latest", "per_page": 100})
            runs += (await gh.getitem(f"{commit}/check-runs?{query}")).get("check_runs") or []
        statuses: list[dict] = []
        if not set(names) <= {run.get("name") for run in runs}:
            statuses = (await gh.getitem(f"{commit}/status?per_page=100")).get("statuses") or []
        return rules.checks_by_name(names, runs, statuses)

    @staticmethod
    async def _changed_files(gh, repo: str, env: Environment) -> list[str] | None:
        """The pull request's changed files, with the old names of renamed ones (a file moved out of a path changes
        that path too); None when GitHub's list is cut at its limit and the rest may touch `paths`."""
        files, listed = [], 0
        async for changed in gh.getiter(f"{repo}/pulls/{env.pr_number}/files?per_page=100"):
            listed += 1
            files.append(changed["filename"])
            if changed.get("previous_filename"):
                files.append(changed["previous_filename"])
        return None if listed >= rules.MAX_PULL_FILES else files
