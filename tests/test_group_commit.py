"""Group commit at `POST /webhooks` (ghapp/web/intake.py): concurrent deliveries in one transaction, each answered
only once its rows are durable; duplicates in and across batches, a bad delivery among good ones, the database
going away mid-batch, order within one pull request, and answered-202-means-stored across a SIGKILL.

Batches are made deterministic without timing: `intake_batch=N` with a long `intake_wait` closes a batch exactly
when its N-th delivery arrives, and deliveries are handed in one by one (each waits until the previous one is in)
where their order matters."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import aiohttp
import asyncpg
import pytest

from ghapp.web import keys
from ghapp.web.app import create_app
from tests.conftest import SCRIPTED_MODULE
from tests.support import Deliveries, environment, fake_sha, ready, wait_for

LONG = 60.0  # intake_wait for tests whose batches are closed by their size, never by the clock
PR = "pull_request"


@pytest.fixture
def start_app(start_app):
    """The app without workers (no Terraform), batches of `batch` deliveries that wait for their batch-mates."""

    async def start(batch: int, **changes):
        return await start_app(workers=False, intake_batch=batch, intake_wait=LONG, **changes)

    return start


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict]:
    return resp.status, json.loads(await resp.text())


async def send_in_order(client, deliveries: Deliveries, items: list[tuple[str, dict, str | None]]):
    """POST each (event, payload, delivery id) once the previous one is queued; the answers, in that order."""
    group_commit = client.app[keys.INTAKE]
    tasks = []
    for event, data, delivery_id in items:
        body, headers = deliveries.signed(event, data, delivery_id)
        expected = group_commit.submitted + 1
        tasks.append(asyncio.create_task(_post(client, body, headers)))
        await wait_for(lambda n=expected: _at_least(group_commit.submitted, n), what=f"delivery {expected} queued")
    return await asyncio.gather(*tasks)


async def _post(client, body: bytes, headers: dict) -> tuple[int, dict]:
    async with client.post("/webhooks", data=body, headers=headers) as resp:
        return await answer(resp)


async def _at_least(value: int, n: int) -> bool:
    return value >= n


async def test_concurrent_deliveries_are_one_transaction_and_each_is_answered_after_it(start_app, deliveries, db):
    client = await start_app(batch=4)
    group_commit = client.app[keys.INTAKE]
    ids = [str(uuid.uuid4()) for _ in range(4)]
    items = [(PR, deliveries.pull_request("opened", number=n, sha=fake_sha(n)), ids[n - 1]) for n in range(1, 5)]

    answers = await send_in_order(client, deliveries, items)

    assert [status for status, _ in answers] == [202] * 4, answers
    assert (group_commit.batches, group_commit.committed) == (1, 4)
    # rows written by one transaction carry its transaction id
    assert await db.fetchval("SELECT count(DISTINCT xmin::text) FROM deliveries WHERE id = ANY($1)", ids) == 1
    env_ids = [reply["environment_id"] for _, reply in answers]
    for n, env_id in enumerate(env_ids, 1):
        assert (await environment(db, env_id))["desired_sha"] == fake_sha(n)


async def test_duplicates_within_a_batch_and_across_batches_are_200(start_app, deliveries, db):
    client = await start_app(batch=1)
    stored = str(uuid.uuid4())
    status, _ = (await send_in_order(client, deliveries, [(PR, deliveries.pull_request("opened"), stored)]))[0]
    assert status == 202
    await client.close()

    client = await start_app(batch=4)
    twice = str(uuid.uuid4())
    sync = deliveries.pull_request("synchronize", sha=fake_sha("new"))
    answers = await send_in_order(
        client,
        deliveries,
        [
            (PR, sync, twice),
            (PR, deliveries.pull_request("synchronize", sha=fake_sha("again")), twice),  # same id in the batch
            (PR, deliveries.pull_request("opened"), stored),  # accepted by an earlier batch
            (PR, deliveries.pull_request("opened", number=7), None),
        ],
    )

    assert answers[0][0] == 202
    assert answers[1:3] == [(200, {"duplicate": twice}), (200, {"duplicate": stored})]
    assert answers[3][0] == 202
    env = await environment(db, answers[0][1]["environment_id"])
    assert (env["desired_sha"], env["generation"]) == (fake_sha("new"), 2), "the duplicate changed nothing"
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 3


async def test_a_malformed_and_an_ignored_delivery_do_not_fail_their_batch_mates(start_app, deliveries, db):
    client = await start_app(batch=4)
    malformed = deliveries.pull_request("opened", number=9)
    del malformed["repository"]["id"]  # the handler refuses it after the delivery id was recorded in the batch
    bad_id = str(uuid.uuid4())
    answers = await send_in_order(
        client,
        deliveries,
        [
            (PR, deliveries.pull_request("opened", number=1), None),
            (PR, malformed, bad_id),
            (PR, deliveries.pull_request("closed", number=404), None),  # closing an unknown PR: ignored
            (PR, deliveries.pull_request("opened", number=2), None),
        ],
    )

    assert [status for status, _ in answers] == [202, 400, 200, 202], answers
    assert "ignored" in answers[2][1]
    numbers = [r["pr_number"] for r in await db.fetch("SELECT pr_number FROM environments ORDER BY pr_number")]
    assert numbers == [1, 2]
    assert not await db.fetchval("SELECT count(*) FROM deliveries WHERE id = $1", bad_id), "redelivery must count"
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 3

    fixed = deliveries.pull_request("opened", number=9)
    status, _ = (await send_in_order(client, deliveries, [(PR, fixed, bad_id)] + _fillers(deliveries, 3)))[0]
    assert status == 202, "the refused delivery was not remembered as accepted"


async def test_a_failed_delivery_sends_its_batch_round_again_and_each_mate_is_applied_once(start_app, deliveries, db):
    """The batch is first written without savepoints; a failure rolls that attempt back whole and writes it again
    with them: the batch-mates' writes land once (one generation each), the failed delivery's not at all."""
    client = await start_app(batch=1)
    status, reply = (await send_in_order(client, deliveries, [(PR, deliveries.pull_request("opened"), None)]))[0]
    assert status == 202
    env_id = reply["environment_id"]
    await client.close()

    client = await start_app(batch=4)
    malformed = deliveries.pull_request("synchronize", sha=fake_sha("bad"))
    malformed["pull_request"]["head"]["sha"] = "not a sha"
    answers = await send_in_order(
        client,
        deliveries,
        [
            (PR, deliveries.pull_request("synchronize", sha=fake_sha(1)), None),
            (PR, deliveries.pull_request("opened", number=7), None),
            (PR, malformed, None),
            (PR, deliveries.pull_request("synchronize", sha=fake_sha(3)), None),
        ],
    )

    assert [status for status, _ in answers] == [202, 202, 400, 202], answers
    env = await environment(db, env_id)
    assert (env["desired_sha"], env["generation"]) == (fake_sha(3), 3), "each push applied once, in order"
    assert await db.fetchval("SELECT count(*) FROM environments") == 2
    assert client.app[keys.INTAKE].batches == 1


async def test_pushes_to_an_existing_pull_request_in_one_batch_each_see_the_one_before(start_app, deliveries, db):
    """The batch reads and locks its pull requests' rows once; each delivery starts from the row the one before
    it wrote: an older push after a newer one in the same batch is recognised as outdated."""
    client = await start_app(batch=1)
    status, reply = (await send_in_order(client, deliveries, [(PR, deliveries.pull_request("opened"), None)]))[0]
    env_id = reply["environment_id"]
    await client.close()

    client = await start_app(batch=4)
    newer = deliveries.pull_request("synchronize", sha=fake_sha("newer"), updated_at="2030-01-01T00:00:02Z")
    older = deliveries.pull_request("synchronize", sha=fake_sha("older"), updated_at="2030-01-01T00:00:01Z")
    answers = await send_in_order(
        client,
        deliveries,
        [
            (PR, deliveries.pull_request("synchronize", sha=fake_sha(1)), None),
            (PR, newer, None),
            (PR, older, None),
            (PR, deliveries.pull_request("closed", number=404), None),
        ],
    )

    assert [status for status, _ in answers] == [202, 202, 200, 200], answers
    assert answers[2][1]["environment_id"] == env_id and "older state" in answers[2][1]["ignored"]
    env = await environment(db, env_id)
    assert (env["desired_sha"], env["generation"]) == (fake_sha("newer"), 3)


async def test_an_uninstall_after_a_push_in_one_batch_sees_the_push(start_app, deliveries, db):
    """The pull requests' UPDATEs of a batch are sent together, but before any other event's handler runs: the
    uninstall that follows a push destroys the environment, the push does not bring it back."""
    client = await start_app(batch=1)
    status, reply = (await send_in_order(client, deliveries, [(PR, deliveries.pull_request("opened"), None)]))[0]
    env_id = reply["environment_id"]
    await client.close()

    client = await start_app(batch=3)
    uninstalled = deliveries.payload("installation.deleted")
    uninstalled["installation"]["id"] = (await environment(db, env_id))["installation_id"]
    answers = await send_in_order(
        client,
        deliveries,
        [
            (PR, deliveries.pull_request("synchronize", sha=fake_sha("pushed")), None),
            ("installation", uninstalled, None),
            (PR, deliveries.pull_request("opened", number=7), None),
        ],
    )

    assert [status for status, _ in answers] == [202, 202, 202], answers
    env = await environment(db, env_id)
    assert (env["desired"], env["desired_sha"], env["github_gone"]) == ("absent", fake_sha("pushed"), True)


async def test_an_update_that_fails_when_the_batch_is_written_fails_only_its_delivery(start_app, deliveries, db):
    client = await start_app(batch=1)
    opened = [(PR, deliveries.pull_request("opened", number=n), None) for n in (1, 2)]
    first, second = [reply["environment_id"] for _, reply in await send_in_order(client, deliveries, opened)]
    await client.close()
    await db.execute(
        """CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.head_sha = repeat('b', 40) THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
           CREATE TRIGGER refuse_bad BEFORE UPDATE ON environments FOR EACH ROW EXECUTE FUNCTION refuse_bad()"""
    )

    client = await start_app(batch=2)
    answers = await send_in_order(
        client,
        deliveries,
        [
            (PR, deliveries.pull_request("synchronize", number=1, sha="b" * 40), None),
            (PR, deliveries.pull_request("synchronize", number=2, sha=fake_sha("good")), None),
        ],
    )

    assert [status for status, _ in answers] == [500, 202], answers
    assert (await environment(db, first))["head_sha"] != "b" * 40
    assert (await environment(db, second))["desired_sha"] == fake_sha("good")


def _fillers(deliveries: Deliveries, n: int) -> list[tuple[str, dict, None]]:
    return [(PR, deliveries.pull_request("opened", number=100 + i), None) for i in range(n)]


async def test_the_database_going_away_mid_batch_is_503_for_the_whole_batch(start_app, deliveries, db):
    client = await start_app(batch=1)
    await send_in_order(client, deliveries, [(PR, deliveries.pull_request("opened", number=1), None)])
    await client.close()
    client = await start_app(batch=3)
    items = [
        (PR, deliveries.pull_request("opened", number=2), str(uuid.uuid4())),
        (PR, deliveries.pull_request("synchronize", number=1, sha=fake_sha(2)), str(uuid.uuid4())),
        (PR, deliveries.pull_request("opened", number=3), str(uuid.uuid4())),
    ]
    async with db.acquire() as holder, holder.transaction():
        # the batch will wait for this row lock, and its connection is cut while it waits
        await holder.execute("SELECT 1 FROM environments WHERE pr_number = 1 FOR UPDATE")
        sending = asyncio.create_task(send_in_order(client, deliveries, items))
        pid = await wait_for(lambda: _waiting_on_a_lock(db), what="the batch to wait for the row lock")
        await db.execute("SELECT pg_terminate_backend($1)", pid)
        answers = await sending

    assert [status for status, _ in answers] == [503] * 3, answers
    assert await db.fetchval("SELECT count(*) FROM environments") == 1, "nothing of the batch was written"
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 1

    answers = await send_in_order(client, deliveries, items)  # GitHub's "Redeliver", database back
    assert [status for status, _ in answers] == [202] * 3, answers


async def test_a_batch_undone_to_end_a_deadlock_is_written_again(start_app, deliveries, db):
    client = await start_app(batch=2)
    opened = [(PR, deliveries.pull_request("opened", number=n), None) for n in (1, 2)]
    first, second = [reply["environment_id"] for _, reply in await send_in_order(client, deliveries, opened)]
    pushes = [(PR, deliveries.pull_request("synchronize", number=n, sha=fake_sha("push", n)), None) for n in (1, 2)]
    async with db.acquire() as holder, holder.transaction():
        await holder.execute("SET LOCAL deadlock_timeout = '1h'")  # PostgreSQL undoes the batch, not this
        await holder.execute("SELECT 1 FROM environments WHERE id = $1 FOR UPDATE", second)
        sending = asyncio.create_task(send_in_order(client, deliveries, pushes))
        await wait_for(lambda: _waiting_on_a_lock(db), what="the batch to hold the first row and wait for the second")
        await holder.execute("SELECT 1 FROM environments WHERE id = $1 FOR UPDATE", first)  # a deadlock
    answers = await sending

    assert [status for status, _ in answers] == [202, 202], answers
    for n, env_id in ((1, first), (2, second)):
        assert (await environment(db, env_id))["desired_sha"] == fake_sha("push", n)


async def test_a_connection_the_server_closed_between_batches_is_replaced_not_answered_503(start_app, deliveries, db):
    client = await start_app(batch=1)
    assert (await send_in_order(client, deliveries, [(PR, deliveries.pull_request("opened"), None)]))[0][0] == 202
    held = client.app[keys.INTAKE]._conn
    await db.execute("SELECT pg_terminate_backend($1)", held.get_server_pid())  # e.g. PostgreSQL restarted
    await wait_for(lambda: _closed(held), what="the writer's connection to see it was closed")

    pushed = deliveries.pull_request("synchronize", sha=fake_sha("after"))
    assert (await send_in_order(client, deliveries, [(PR, pushed, None)]))[0][0] == 202


async def _closed(conn) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back when the server closed it
        return True


async def _waiting_on_a_lock(db) -> int | None:
    return await db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )


async def test_deliveries_for_one_pull_request_apply_in_arrival_order(start_app, deliveries, db):
    client = await start_app(batch=5)
    shas = [fake_sha("push", i) for i in range(4)]
    items = [(PR, deliveries.pull_request("opened", sha=shas[0]), None)]
    items += [(PR, deliveries.pull_request("synchronize", sha=sha), None) for sha in shas[1:]]
    items.append((PR, deliveries.pull_request("opened", number=77), None))

    answers = await send_in_order(client, deliveries, items)

    assert [status for status, _ in answers] == [202] * 5, answers
    env = await environment(db, answers[0][1]["environment_id"])
    assert (env["desired_sha"], env["head_sha"], env["generation"]) == (shas[-1], shas[-1], 4)

    later = [(PR, deliveries.pull_request("closed"), None), *_fillers(deliveries, 4)]
    answers = await send_in_order(client, deliveries, later)
    assert [status for status, _ in answers] == [202] * 5, answers
    assert (await environment(db, env["id"]))["desired"] == "absent"


async def test_a_delivery_alone_is_not_held_for_batch_mates(deliveries, settings, aiohttp_client):
    """With the default wait the batch closes by itself: one delivery alone is answered."""
    app = create_app(settings, workers=False)
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    body, headers = deliveries.signed(PR, deliveries.pull_request("opened"))
    status, _ = await _post(client, body, headers)
    assert status == 202


async def _ready(app) -> bool:
    return app[keys.READY].is_set()


async def test_every_delivery_answered_202_is_stored_after_a_sigkill(serve, deliveries, db):
    """Answered 202 means durable: kill the server while deliveries stream in, restart it, and find each of them."""
    proc = serve(GHAPP_TERRAFORM_MODULE=str(SCRIPTED_MODULE), GHAPP_PUSH_SETTLE="1h", GHAPP_INTAKE_BATCH="8")
    await wait_for(lambda: ready(proc), what="serve ready")
    accepted: list[str] = []
    enough = asyncio.Event()

    async def stream(worker: int, session: aiohttp.ClientSession) -> None:
        for i in range(10_000):
            delivery_id = f"{worker}-{i}-{uuid.uuid4()}"
            data = deliveries.pull_request("synchronize", number=worker + 1, sha=fake_sha(worker, i))
            body, headers = deliveries.signed(PR, data, delivery_id)
            try:
                async with session.post(f"{proc.url}/webhooks", data=body, headers=headers) as r:
                    if r.status == 202:
                        accepted.append(delivery_id)
            except aiohttp.ClientError:
                return  # the server is gone
            if len(accepted) >= 200:
                enough.set()

    async with aiohttp.ClientSession() as session:
        streams = [asyncio.create_task(stream(w, session)) for w in range(8)]
        await asyncio.wait_for(enough.wait(), 120)
        proc.kill(signal.SIGKILL)  # deliveries are in flight: some in a batch being written
        await asyncio.gather(*streams)

    stored = {r["id"] for r in await db.fetch("SELECT id FROM deliveries WHERE id = ANY($1)", accepted)}
    assert set(accepted) <= stored, f"{len(set(accepted) - stored)} deliveries answered 202 are missing"
    restarted = serve(GHAPP_TERRAFORM_MODULE=str(SCRIPTED_MODULE), GHAPP_PUSH_SETTLE="1h")
    await wait_for(lambda: ready(restarted), what="restarted")
    stored = {r["id"] for r in await db.fetch("SELECT id FROM deliveries WHERE id = ANY($1)", accepted)}
    assert set(accepted) <= stored
