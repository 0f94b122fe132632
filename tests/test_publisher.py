"""The publisher's loop: a pass that published everything that was due waits for the next NOTIFY (coalesced)
instead of running again at once, so a stream of pushes does not keep it publishing back to back."""

from __future__ import annotations

from ghapp import db as ghapp_db
from ghapp.core.contract import Desired
from ghapp.core.pulls import change_from_payload
from ghapp.db import desired
from ghapp.workers import publisher
from ghapp.workers.publisher import LogSink, Publisher


async def _open(db, deliveries, numbers) -> None:
    async with db.acquire() as conn, conn.transaction():
        for n in numbers:
            change = change_from_payload(deliveries.pull_request("opened", number=n), Desired.PRESENT)
            await desired.apply_change(conn, change, 3600.0)


async def _unpublished(db) -> int:
    return await db.fetchval("SELECT count(*) FROM environments WHERE version > published_version")


async def test_a_pass_runs_again_at_once_only_when_its_batch_was_full(db, database_url, deliveries, settings):
    await ghapp_db.migrate(db)
    passes = Publisher(db, database_url, LogSink(), settings)

    await _open(db, deliveries, [1, 2])
    assert await passes._publish_pass() is None, "all that was due is published: wait for the next change"
    assert await _unpublished(db) == 0

    await _open(db, deliveries, range(10, 10 + publisher.BATCH + 1))
    assert await passes._publish_pass() == 0, "a full batch: there may be more, at once"
    assert await _unpublished(db) == 1
    assert await passes._publish_pass() is None
    assert await _unpublished(db) == 0
