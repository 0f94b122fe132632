"""Reconcile workers: claim unconverged environments under a lease and run Terraform until they converge."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import asyncpg

from ghapp.config import Settings
from ghapp.core.contract import NOTIFY_CHANNEL, Action, Hold, RunState, short_sha
from ghapp.core.model import Environment
from ghapp.core.policy import backoff, next_action, retry_delay
from ghapp.core.repoconfig import Held, Plan, encode_inputs
from ghapp.core.tfevents import Progress
from ghapp.db import UNAVAILABLE, runs
from ghapp.sources import UnsafeArchive
from ghapp.terraform import ModuleInputs, Terraform
from ghapp.workers.loops import Wake, run_loop
from ghapp.workers.resolve import Resolver
from ghapp.workers.runlog import RunLog

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # at most one progress report per second per run
WAKE_COALESCE = 0.02  # seconds to let more notifications arrive before claiming


@dataclasses.dataclass(frozen=True)
class RunInfo:
    id: int
    action: Action
    sha: str | None
    plan: Plan = Plan()
    held: Held | None = None  # a destroy because a rule says no preview


@dataclasses.dataclass(frozen=True)
class Outcome:
    state: RunState
    preview_url: str | None = None
    outputs: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    duration: float = 0.0


def applied_module(env: Environment) -> Path | None:
    """The module the preview was last applied with (None: the operator's)."""
    return _path(env.module)


def _path(module: str | None) -> Path | None:
    return Path(module) if module else None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        terraform: Terraform,
        settings: Settings,
        owner: str | None = None,
        on_run_finished: Callable[[str, str, float], None] | None = None,
        resolver: Resolver | None = None,
        on_woken: Callable[[float], None] | None = None,
    ):
        self.pool = pool
        self.database_url = database_url
        self.terraform = terraform
        self.settings = settings
        self.owner = owner or worker_id()
        self.on_run_finished = on_run_finished or (lambda _action, _state, _seconds: None)
        self.resolver = resolver or Resolver()
        self.on_woken = on_woken or (lambda _seconds: None)  # a sleeping preview is active again: the wake latency
        self.slots = asyncio.Semaphore(settings.max_parallel_runs)
        self.running: dict[int, asyncio.Event] = {}  # env id → "look again" (set on NOTIFY)
        self._tasks: set[asyncio.Task] = set()
        self._wake = Wake(database_url, NOTIFY_CHANNEL, self._look_again)
        self._stopping = False
        self._interrupting = False

    # --- the claiming loop -------------------------------------------------------------------------------------------

    async def reconcile_forever(self) -> None:
        await run_loop(
            "reconciler", self._claim_pass, poll=self.settings.poll_interval, wake=self._wake, coalesce=WAKE_COALESCE
        )

    async def _claim_pass(self) -> float | None:
        """Claim what is due while slots are free; then sleep until woken or the next environment is due."""
        await self._claim_all()
        async with self.pool.acquire() as conn:
            due = await runs.seconds_until_due(conn, self.settings.max_previews)
        return None if due is None else due + 0.01

    async def _claim_all(self) -> None:
        while not self._stopping:
            await self.slots.acquire()
            try:
                async with self.pool.acquire() as conn:
                    env = await runs.claim(conn, self.owner, self.settings.lease_ttl, self.settings.max_previews)
            except BaseException:
                self.slots.release()
                raise
            if env is None:
                self.slots.release()
                return
            task = asyncio.create_task(self._reconcile(env), name=f"reconcile-{env.id}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.slots.release()
        self._wake.set()  # a slot is free: look for more work
        if not task.cancelled() and task.exception():
            log.error("reconcile task crashed", exc_info=task.exception())

    def _look_again(self, payload: str) -> None:
        """An environment changed: a run of it in flight checks whether it is superseded."""
        with contextlib.suppress(ValueError):
            if (event := self.running.get(int(payload))) is not None:
                event.set()

    # --- shutdown ----------------------------------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Stop claiming; let running runs finish within `grace`, then interrupt them and release their leases."""
        self._stopping = True
        self._wake.set()
        if not self._tasks:
            return
        log.info("waiting up to %.0fs for %d run(s) to finish", grace, len(self._tasks))
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        if pending:
            self._interrupting = True
            for event in self.running.values():
                event.set()
            await asyncio.wait(pending)

    # --- one environment ---------------------------------------------------------------------------------------------

    async def _reconcile(self, env: Environment) -> None:
        action = next_action(env.desired, env.provisioned)
        plan, held = Plan(), None
        if action is Action.APPLY:
            resolution = await self._resolve_holding_lease(env)
            if resolution is None:
                return
            if isinstance(resolution, Held):
                held = resolution
                if held.hold is not Hold.SKIPPED or not env.provisioned:
                    async with self.pool.acquire() as conn:
                        await runs.mark_held(conn, env, self.owner, held)
                    log.info("%s: held (%s): %s", env.label, held.hold, held.reason)
                    return
                action = Action.DESTROY  # a rule says no preview: the one that exists goes
            else:
                plan = resolution
                if not env.provisioned and plan.config.max_previews != env.max_previews:
                    async with self.pool.acquire() as conn:  # its repository's cap decides its place in line
                        await runs.requeue_with_cap(conn, env, self.owner, plan.config.max_previews)
                    return
        if action is None:
            async with self.pool.acquire() as conn:
                await runs.mark_destroyed(conn, env, self.owner)
            return
        # `module:` changed to one that keeps its state elsewhere: what the applied one made goes first
        replaced = (
            action is Action.APPLY
            and env.provisioned
            and not self.terraform.same_workdir(applied_module(env), _path(plan.module), env.name)
        )
        if replaced and not await self._destroy_with_applied_module(env):
            return
        async with self.pool.acquire() as conn:
            applying = plan if action is Action.APPLY else None
            run_id = await runs.start_run(
                conn,
                env,
                action,
                self.owner,
                applying,
                ttl_seconds=self.settings.env_ttl,
                lease_seconds=self.settings.lease_ttl,
            )
        if run_id is None:
            log.info("%s: lease lost before its %s started; left to its new owner", env.label, action)
            return
        run = RunInfo(run_id, action, env.desired_sha if action is Action.APPLY else env.deployed_sha, plan, held)
        runlog = RunLog(self.pool, run_id, env.id)
        started = time.monotonic()
        log.info("%s: %s %s started (run %d)", env.label, action, short_sha(run.sha), run_id)
        outcome = await self._execute(env, run, runlog)
        await runlog.close()
        outcome = dataclasses.replace(outcome, duration=time.monotonic() - started)
        self.on_run_finished(str(action), str(outcome.state), outcome.duration)
        await self._record(env, run, outcome)
        if action is Action.DESTROY and outcome.state is RunState.SUCCEEDED:
            await self.terraform.delete_workspace(env.name, self._module(env, run))
        if replaced:  # destroyed before this apply; its workspace goes now
            await self.terraform.delete_workspace(env.name, applied_module(env))
        log.log(
            logging.WARNING if outcome.state is RunState.FAILED else logging.INFO,
            "%s: %s %s in %.1fs%s",
            env.label,
            action,
            outcome.state,
            outcome.duration,
            f" at {outcome.preview_url}" if outcome.preview_url else f": {outcome.error}" if outcome.error else "",
        )

    async def _destroy_with_applied_module(self, env: Environment) -> bool:
        """Destroy what the module the preview was applied with made, before another module applies; False if
        that did not succeed (recorded as a failure and retried like one)."""
        async with self.pool.acquire() as conn:
            run_id = await runs.start_run(
                conn,
                env,
                Action.DESTROY,
                self.owner,
                ttl_seconds=self.settings.env_ttl,
                lease_seconds=self.settings.lease_ttl,
            )
        if run_id is None:
            log.info("%s: lease lost before its destroy started; left to its new owner", env.label)
            return False
        run = RunInfo(run_id, Action.DESTROY, env.deployed_sha)
        log.info("%s: its module changed: destroying with %s first (run %d)", env.label, env.module, run_id)
        runlog = RunLog(self.pool, run_id, env.id)
        outcome = await self._execute(env, run, runlog)
        await runlog.close()
        if outcome.state is not RunState.SUCCEEDED:
            await self._record(env, run, outcome)
            return False
        async with self.pool.acquire() as conn:
            await runs.finish_run(conn, run_id, RunState.SUCCEEDED)
        return True

    async def _resolve_holding_lease(self, env: Environment) -> Plan | Held | None:
        """`_resolve`, the lease renewed meanwhile: reading GitHub (the configuration, a commit's archive) may take
        longer than a lease. None, the resolving cancelled, if the lease is lost all the same (the database away)."""
        task = asyncio.create_task(self._resolve(env))
        heartbeat = self.settings.lease_ttl / 3
        valid_until = time.monotonic() + self.settings.lease_ttl
        while True:
            done, _ = await asyncio.wait({task}, timeout=heartbeat)
            if done:
                return task.result()
            try:
                async with self.pool.acquire() as conn:
                    renewed = await runs.renew_lease(conn, env.id, self.owner, self.settings.lease_ttl) is not None
            except UNAVAILABLE:
                renewed = time.monotonic() < valid_until - heartbeat
            if not renewed:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.info("%s: lease lost while resolving; left to its new owner", env.label)
                return None
            valid_until = time.monotonic() + self.settings.lease_ttl

    async def _resolve(self, env: Environment) -> Plan | Held | None:
        """The plan to apply `env` with, or why not now; None: resolving failed (GitHub unreachable, ...) and the
        environment is retried with backoff."""
        try:
            return await self.resolver.resolve(env)
        except UnsafeArchive as e:  # the commit's archive will always be refused: say so, retry only on a push
            return Held(Hold.INVALID, f"the pull request's code at {short_sha(env.desired_sha)} cannot be used: {e}")
        except Exception as e:
            log.warning("%s: cannot resolve its configuration: %s", env.label, e, exc_info=True)
            # GitHub unreachable is not the pull request's fault: retried with backoff, never parked like a
            # failing module (GHAPP_MAX_ATTEMPTS), so the preview deploys once GitHub answers again
            delay = backoff(env.attempts + 1, self.settings.retry_base, self.settings.retry_cap)
            async with self.pool.acquire() as conn:
                await runs.mark_failed(conn, env, self.owner, f"cannot read the repository's configuration: {e}", delay)
            return None

    async def _execute(self, env: Environment, run: RunInfo, runlog: RunLog) -> Outcome:
        inputs = ModuleInputs(
            environment_id=env.id,
            environment_name=env.name,
            repository=env.repository,
            pr_number=env.pr_number,
            git_sha=run.sha or env.desired_sha or "",
            head_ref=env.head_ref,
            source_dir=run.plan.source_dir,
            sleeping=env.desired_sleeping,
            extra=self._tf_vars(env, run),
        )
        last_report = 0.0

        def on_line(line: str, progress: Progress, changed: bool) -> None:
            nonlocal last_report
            runlog.add(line)
            now = time.monotonic()
            if changed and now - last_report >= PROGRESS_INTERVAL:
                last_report = now
                runlog.set_progress(progress.as_dict())

        look_again = self.running.setdefault(env.id, asyncio.Event())
        task = asyncio.create_task(self.terraform.run(run.action, inputs, on_line, module=self._module(env, run)))
        try:
            interrupted = await self._supervise(env, task, look_again)
        finally:
            self.running.pop(env.id, None)
        if interrupted is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return interrupted
        try:
            result = task.result()
        except Exception as e:
            log.exception("run %d could not run terraform", run.id)
            return Outcome(RunState.FAILED, error=str(e))
        if not result.ok:
            return Outcome(RunState.FAILED, error=result.error, outputs=result.progress.outputs)
        outputs = result.progress.outputs
        if run.action is Action.APPLY and not outputs.get("preview_url"):
            return Outcome(
                RunState.FAILED,
                outputs=outputs,
                error="the module has no `preview_url` output (see the module contract)",
            )
        return Outcome(
            RunState.SUCCEEDED,
            preview_url=outputs.get("preview_url"),
            outputs=outputs,
        )

    @staticmethod
    def _tf_vars(env: Environment, run: RunInfo) -> Mapping[str, str]:
        """An apply gets its plan's inputs; a destroy those it was applied with (a module's variables without a
        default must be set for a destroy too)."""
        if run.action is Action.APPLY:
            return run.plan.tf_vars
        return encode_inputs((env.config or {}).get("inputs") or {})

    @staticmethod
    def _module(env: Environment, run: RunInfo) -> Path | None:
        """An apply runs the module its plan names; a destroy the one the environment was applied with."""
        return _path(run.plan.module) if run.action is Action.APPLY else applied_module(env)

    async def _supervise(self, env: Environment, task: asyncio.Task, look_again: asyncio.Event) -> Outcome | None:
        """Wait for the run; return the outcome of interrupting it instead when it is superseded, times out, loses
        its lease or the app shuts down."""
        heartbeat = self.settings.lease_ttl / 3
        deadline = time.monotonic() + self.settings.run_timeout
        lease_valid_until = time.monotonic() + self.settings.lease_ttl
        while not task.done():
            waiter = asyncio.create_task(look_again.wait())
            timeout = max(0.0, min(heartbeat, deadline - time.monotonic()))
            await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            look_again.clear()
            if task.done():
                break
            if self._interrupting:
                return Outcome(RunState.INTERRUPTED, error="interrupted: ghapp is shutting down")
            if time.monotonic() >= deadline:
                return Outcome(
                    RunState.FAILED,
                    error=f"timed out after {self.settings.run_timeout:.0f}s (GHAPP_RUN_TIMEOUT)",
                )
            try:
                async with self.pool.acquire() as conn:
                    generation = await runs.renew_lease(conn, env.id, self.owner, self.settings.lease_ttl)
            except UNAVAILABLE:
                if time.monotonic() > lease_valid_until - heartbeat:
                    return Outcome(
                        RunState.INTERRUPTED,
                        error="interrupted: the database is unreachable and the lease is expiring",
                    )
                continue
            if generation is None:
                return Outcome(RunState.INTERRUPTED, error="interrupted: lease lost to another worker")
            lease_valid_until = time.monotonic() + self.settings.lease_ttl
            if generation != env.generation:
                return Outcome(RunState.SUPERSEDED, error="superseded by a newer desired state")
        return None

    async def _record(self, env: Environment, run: RunInfo, outcome: Outcome) -> None:
        """Write the outcome; if the database is down, retry until our lease would have expired anyway."""
        for attempt in range(8):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await runs.finish_run(conn, run.id, outcome.state, error=outcome.error)
                    await self._record_env(conn, env, run, outcome)
                return
            except UNAVAILABLE as e:
                log.warning("cannot record run %d yet (%s)", run.id, e)
                await asyncio.sleep(backoff(attempt + 1, 0.25, 5.0))
        log.error("gave up recording run %d; the environment will be reconciled again", run.id)

    async def _record_env(self, conn: asyncpg.Connection, env: Environment, run: RunInfo, outcome: Outcome) -> None:
        if outcome.state is RunState.SUCCEEDED and run.action is Action.APPLY:
            woken_after = await runs.mark_active(conn, env, self.owner, outcome.preview_url, outcome.outputs)
            if woken_after is not None:
                log.info("%s: awake %.1fs after the wake was asked for", env.label, woken_after)
                self.on_woken(woken_after)
        elif outcome.state is RunState.SUCCEEDED and run.held is not None:
            await runs.mark_destroyed(conn, env, self.owner, run.held)
        elif outcome.state is RunState.SUCCEEDED:
            await runs.mark_destroyed(conn, env, self.owner)
        elif outcome.state is RunState.FAILED:
            delay = retry_delay(
                env.attempts + 1, self.settings.retry_base, self.settings.retry_cap, self.settings.max_attempts
            )
            await runs.mark_failed(conn, env, self.owner, outcome.error or str(RunState.FAILED), delay)
        else:
            await runs.release(conn, env, self.owner)
