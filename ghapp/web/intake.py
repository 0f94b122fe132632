"""Group commit for `POST /webhooks`: deliveries that arrive together are written in one transaction and one
commit. Each one still gets its own answer, given only once the commit has made its rows durable.

- Batches hold at most `max_batch` deliveries; the first of a batch waits at most `max_wait` seconds (counted from
  its arrival) for batch-mates, so a delivery that arrives alone is delayed by that much at most.
- One batch is written at a time, deliveries in arrival order: two deliveries for the same pull request are
  applied in the order they arrived, within a batch and across batches.
- A delivery id seen twice in one batch, or stored before, is a duplicate (200).
- A malformed payload (400), an ignored event (200) or a failing handler (500) rolls back only its own writes,
  never its batch-mates'. A batch is written first in a few round trips whatever its size: the delivery ids in one
  statement, the rows of its pull requests read and locked in one, their UPDATEs sent together in one pipelined
  round trip (desired.LockedRows), the commit. If a delivery fails, that attempt is rolled back and the batch is
  written again with a savepoint around each delivery.
- The writer keeps one pool connection while it works (no reset round trip per batch); an error returns it, and
  one the server closed between batches is replaced before the next.
- A batch that PostgreSQL rolls back to end a deadlock (with another replica's batch, or a worker) is written again.
- The database unreachable at any point of the batch (or its commit): 503 for every delivery of the batch, and
  GitHub can redeliver; a delivery whose commit did succeed is then a duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable

import asyncpg
from gidgethub.sansio import Event

from ghapp.config import Settings
from ghapp.core.payload import MalformedPayload
from ghapp.core.pulls import pull_request_key
from ghapp.db import UNAVAILABLE, desired, intake
from ghapp.web.events import router

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What `POST /webhooks` answers for one delivery."""

    status: int
    body: dict


DEADLOCK_RETRIES = 3  # times a batch is written again after PostgreSQL undid it to end a deadlock
UNAVAILABLE_ANSWER = Answer(503, {"error": "database unavailable; redeliver later"})


@dataclasses.dataclass
class _Pending:
    event: Event
    arrived: float
    future: asyncio.Future[Answer]


class GroupCommit:
    """The one writer of webhook deliveries of this process; `submit()` from each request handler."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.max_batch = max(1, settings.intake_batch)
        self.max_wait = settings.intake_wait
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._conn: asyncpg.Connection | None = None
        self.submitted = 0  # deliveries handed in, committed batches and the deliveries in them
        self.batches = 0
        self.committed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook group commit")

    async def close(self) -> None:
        """Stop; deliveries still waiting get 503 (their batch never began, nothing of them was written)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._release()
        while not self._queue.empty():
            _answer(self._queue.get_nowait().future, UNAVAILABLE_ANSWER)

    async def submit(self, event: Event) -> Answer:
        """Write `event` with whatever arrives with it; its answer once its batch is committed (or failed)."""
        if self._task is None or self._task.done():
            return UNAVAILABLE_ANSWER
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.submitted += 1
        self._queue.put_nowait(_Pending(event, time.monotonic(), future))
        # Shielded: a client that goes away does not cancel the batch, and its answer is simply not read.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                batch = await self._collect()
                await self._write(batch)
                batch = []
        finally:
            for pending in batch:  # cancelled mid-batch: nothing of it was committed
                _answer(pending.future, UNAVAILABLE_ANSWER)

    async def _collect(self) -> list[_Pending]:
        """The next batch: the first delivery waiting, then those that arrive within `max_wait` of it."""
        first = await self._queue.get()
        batch = [first]
        deadline = first.arrived + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            answers = await self._transaction(batch)
        except UNAVAILABLE as e:
            log.warning("%d deliveries refused, database unavailable: %s", len(batch), e)
            answers = [UNAVAILABLE_ANSWER] * len(batch)
        except Exception:  # a statement of the batch itself failed: every delivery of it is answered
            log.exception("a batch of %d deliveries failed", len(batch))
            answers = [Answer(500, {"error": "internal error"})] * len(batch)
        else:
            self.batches += 1
            self.committed += len(batch)
        for pending, answer in zip(batch, answers, strict=True):
            _answer(pending.future, answer)

    async def _transaction(self, batch: list[_Pending]) -> list[Answer]:
        """One transaction for the whole batch; the answers, in batch order, valid once this returns. The batch is
        written first with the rows of its pull requests locked in one statement and no savepoints; if one of its
        deliveries fails, that attempt is rolled back and the batch is written again with a savepoint around each
        delivery, so that only the failed delivery's writes are undone."""
        answers: list[Answer | None] = [None] * len(batch)
        first_of: dict[str, int] = {}
        for i, pending in enumerate(batch):
            delivery_id = pending.event.delivery_id
            if delivery_id in first_of:  # the same delivery twice in one batch
                answers[i] = Answer(200, {"duplicate": delivery_id})
            else:
                first_of[delivery_id] = i
        conn = await self._connection()
        deadlocks = 0
        try:
            while True:
                try:
                    try:
                        return await self._attempt(conn, batch, first_of, answers, careful=False)
                    except _Failed:
                        return await self._attempt(conn, batch, first_of, answers, careful=True)
                except asyncpg.DeadlockDetectedError:  # the batch was chosen to undo a deadlock: write it again
                    deadlocks += 1
                    if deadlocks > DEADLOCK_RETRIES:
                        raise
                    log.info("a batch of %d deliveries ended a deadlock; writing it again", len(batch))
        except BaseException:
            await self._release()  # the connection may be broken: the next batch takes another one
            raise

    async def _attempt(
        self,
        conn: asyncpg.Connection,
        batch: list[_Pending],
        first_of: dict[str, int],
        duplicates: list[Answer | None],
        *,
        careful: bool,
    ) -> list[Answer]:
        """Write the batch once. Not `careful`: the first failed delivery raises `_Failed` (rolling back)."""
        answers = list(duplicates)
        async with conn.transaction():
            new = await intake.record_deliveries(conn, [(d, batch[i].event.event) for d, i in first_of.items()])
            for delivery_id, i in first_of.items():
                if delivery_id not in new:
                    answers[i] = Answer(200, {"duplicate": delivery_id})
            todo = [(d, batch[i].event) for d, i in first_of.items() if d in new]
            locked = None if careful else await desired.LockedRows.lock(conn, _pull_requests(e for _d, e in todo))
            savepoints = intake.Savepoints(conn)
            failed: list[str] = []
            for delivery_id, event in todo:
                if careful:
                    await savepoints.next()
                elif event.event != "pull_request":  # its handler reads and writes environments by other means
                    await self._flush(locked)
                answer = await self._dispatch(event, conn, locked)
                answers[first_of[delivery_id]] = answer
                if answer.status >= 400:
                    if not careful:
                        raise _Failed
                    await savepoints.rollback()
                    failed.append(delivery_id)
            await self._flush(locked)
            if failed:
                await intake.forget_deliveries(conn, failed)
        return [a if a is not None else UNAVAILABLE_ANSWER for a in answers]

    async def _flush(self, locked: desired.LockedRows | None) -> None:
        """The pull requests' UPDATEs left by their handlers; one that fails sends the batch round again with a
        savepoint around each delivery, where the failing one is answered 500 alone."""
        if locked is None:
            return
        try:
            await locked.flush()
        except (*UNAVAILABLE, asyncpg.DeadlockDetectedError):
            raise
        except Exception as e:
            log.warning("writing a batch's pull requests failed (%s); writing them one by one", e)
            raise _Failed from e

    async def _connection(self) -> asyncpg.Connection:
        """The writer's connection, kept from batch to batch (the pool's reset on release would cost a round trip
        per batch); one the server closed meanwhile (a restart) is given back and another taken."""
        if self._conn is not None and _closed(self._conn):
            await self._release()
        if self._conn is None:
            self._conn = await self.pool.acquire()
        return self._conn

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.pool.release(conn)

    async def _dispatch(self, event: Event, conn: asyncpg.Connection, locked: desired.LockedRows | None) -> Answer:
        """The event's handler, unchanged: it writes desired state on `conn` and says what it did in `result`."""
        result: dict = {}
        try:
            await router.dispatch(event, conn=conn, settings=self.settings, result=result, locked=locked)
        except MalformedPayload as e:
            return Answer(400, {"error": str(e)})
        except (*UNAVAILABLE, asyncpg.DeadlockDetectedError):  # the whole batch's
            raise
        except Exception:  # a bug in one handler must not fail its batch-mates
            log.exception("delivery %s (%s): the handler failed", event.delivery_id, event.event)
            return Answer(500, {"error": "internal error"})
        if "ignored" in result:
            return Answer(200, result)
        return Answer(202, {"accepted": event.delivery_id, **result})


class _Failed(Exception):
    """A delivery failed in a batch written without savepoints."""


def _pull_requests(events: Iterable[Event]) -> list[tuple[int, int]]:
    """(repo_id, pr_number) of each well-formed `pull_request` delivery (a malformed one is refused by its handler)."""
    found = []
    for event in events:
        if event.event == "pull_request":
            with contextlib.suppress(MalformedPayload):
                found.append(pull_request_key(event.data))
    return found


def _closed(conn: asyncpg.Connection) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # asyncpg gave it back to the pool itself when the server closed it
        return True


def _answer(future: asyncio.Future[Answer], answer: Answer) -> None:
    if not future.done():
        future.set_result(answer)
