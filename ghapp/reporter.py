"""How a run is shown to people. The GitHub reporter (check run, sticky comment, deployment) implements the same
interface; offline, `LogReporter` writes the same facts to the log."""
from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from ghapp.contract import Action, RunState
from ghapp.reconcile import short_sha
from ghapp.store import Environment
from ghapp.tfevents import Progress

log = logging.getLogger("ghapp.report")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    id: int
    action: Action
    sha: str | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    state: RunState
    status: str  # the environment's status after the run
    preview_url: str | None = None
    outputs: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    log_tail: str = ""
    duration: float = 0.0


class Reporter(Protocol):
    async def started(self, env: Environment, run: RunInfo) -> None: ...

    async def progress(self, env: Environment, run: RunInfo, progress: Progress) -> None: ...

    async def finished(self, env: Environment, run: RunInfo, outcome: Outcome) -> None: ...


def _label(env: Environment) -> str:
    return f"{env.repository}#{env.pr_number}"


class LogReporter:
    """Offline mode: what would be shown on the PR goes to the log."""

    async def started(self, env: Environment, run: RunInfo) -> None:
        log.info("%s: %s %s started (run %d)", _label(env), run.action, short_sha(run.sha) or "-", run.id)

    async def progress(self, env: Environment, run: RunInfo, progress: Progress) -> None:
        total = "?" if progress.total is None else progress.total
        log.info("%s: %s %d/%s%s", _label(env), run.action, progress.done, total,
                 f" ({progress.current})" if progress.current else "")

    async def finished(self, env: Environment, run: RunInfo, outcome: Outcome) -> None:
        if outcome.state is RunState.SUCCEEDED and run.action is Action.APPLY:
            log.info("%s: active at %s (%s, %.1fs)", _label(env), outcome.preview_url, short_sha(run.sha),
                     outcome.duration)
        elif outcome.state is RunState.SUCCEEDED:
            log.info("%s: destroyed (%.1fs)", _label(env), outcome.duration)
        elif outcome.state is RunState.FAILED:
            log.warning("%s: %s failed: %s", _label(env), run.action, outcome.error)
        else:
            log.info("%s: %s %s (%s)", _label(env), run.action, outcome.state, outcome.error or "")
