"""`POST /webhooks` against the real app and a real PostgreSQL: status codes from DESIGN.md's contract, desired
state written to `environments`, deduplication, and nothing written for any rejected request."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import uuid
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event

from ghapp.core.payload import MalformedPayload
from ghapp.deliveries import sign
from ghapp.web import keys
from ghapp.web.app import create_app
from ghapp.web.metrics import counting_deliveries
from ghapp.web.metrics import setup as setup_metrics
from ghapp.web.webhooks import MAX_BODY, parse_delivery, receive
from tests.support import Deliveries, environment, fake_sha, wait_for

SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"  # head SHA of every pull_request fixture
REPO_ID = 186853002

# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


@pytest.fixture
def start_app(start_app):
    """The shared `start_app`, without workers unless asked: intake alone runs no Terraform."""

    async def start(*, workers: bool = False, **changes):
        return await start_app(workers=workers, **changes)

    return start


async def send(client, body: bytes, headers: dict[str, str]) -> tuple[int, dict | str]:
    data = io.BytesIO(body) if len(body) > 1024 * 1024 else body  # aiohttp warns about large raw bytes
    resp = await client.post("/webhooks", data=data, headers=headers)
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


async def post(client, deliveries: Deliveries, event: str, data: dict, delivery_id: str | None = None):
    return await send(client, *deliveries.signed(event, data, delivery_id))


async def snapshot(db) -> tuple[list[dict], list[dict]]:
    """Every row of `environments` and `deliveries`."""
    envs = [dict(r) for r in await db.fetch("SELECT * FROM environments ORDER BY id")]
    seen = [dict(r) for r in await db.fetch("SELECT * FROM deliveries ORDER BY id")]
    return envs, seen


def pr_event(deliveries: Deliveries, action: str, **changes) -> dict:
    """`pull_request.<action>`; `ready_for_review` (no fixture for it) is derived from `opened`."""
    if action == "ready_for_review":
        data = deliveries.pull_request("opened", **changes)
        data["action"] = "ready_for_review"
        return data
    return deliveries.pull_request(action, **changes)


# --- signatures ------------------------------------------------------------------------------------------------------


def test_github_signature_test_vector():
    assert sign(GITHUB_BODY, GITHUB_SECRET) == GITHUB_SIGNATURE
    validate_event(GITHUB_BODY, signature=GITHUB_SIGNATURE, secret=GITHUB_SECRET)


def test_parse_delivery_accepts_githubs_signature_then_rejects_the_body_as_not_json():
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "1",
        "X-Hub-Signature-256": GITHUB_SIGNATURE,
    }
    with pytest.raises(MalformedPayload):  # the signature passed; "Hello, World!" is not JSON
        parse_delivery(headers, GITHUB_BODY, GITHUB_SECRET)
    with pytest.raises(ValidationFailure):
        parse_delivery(headers, b"Hello, World?", GITHUB_SECRET)
    with pytest.raises(ValidationFailure):
        parse_delivery(headers, GITHUB_BODY, GITHUB_SECRET + " ")


def test_parse_delivery_with_githubs_secret_on_a_json_body():
    body = b'{"zen": "Keep it logically awesome."}'
    headers = {
        "content-type": "application/json",
        "x-github-event": "ping",
        "x-github-delivery": "d-1",
        "x-hub-signature-256": sign(body, GITHUB_SECRET),
    }
    event = parse_delivery(headers, body, GITHUB_SECRET)
    assert (event.event, event.delivery_id, event.data) == ("ping", "d-1", {"zen": "Keep it logically awesome."})


async def test_githubs_test_vector_over_http_passes_the_signature_check(start_app):
    client = await start_app(webhook_secret=GITHUB_SECRET)
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping", "X-GitHub-Delivery": "1"}
    status, _ = await send(client, GITHUB_BODY, {**headers, "X-Hub-Signature-256": GITHUB_SIGNATURE})
    assert status == 400  # signature fine, body not JSON
    status, _ = await send(client, GITHUB_BODY, {**headers, "X-Hub-Signature-256": GITHUB_SIGNATURE[:-1] + "0"})
    assert status == 401


async def test_sha1_signature_alone_is_refused(start_app, deliveries, db):
    """Finding 9: gidgethub falls back to the SHA-1 X-Hub-Signature; only sha256= is accepted."""
    client = await start_app()
    before = await snapshot(db)
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(deliveries.secret.encode(), body, hashlib.sha1).hexdigest()
    status, reply = await send(client, body, headers)
    assert status == 401, reply
    assert await snapshot(db) == before


async def raw_request(client, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (request line and headers) and `body` as they are, keep the connection open, and read the
    status line and the body of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    try:
        async with asyncio.timeout(30):  # a guard against hanging forever, far above any limit of the app
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            return status, await reader.readexactly(length)
    finally:
        writer.close()


async def test_the_signature_header_is_checked_before_the_body_is_read(start_app):
    """Finding 8: every delivery was read whole (up to 25 MB) before anything was checked. A request that announces
    20 MB and sends none of it gets its 401 at once."""
    client = await start_app()
    head = (
        "POST /webhooks HTTP/1.1\nHost: x\nContent-Type: application/json\nX-GitHub-Event: push\n"
        f"X-GitHub-Delivery: d-1\nContent-Length: {20 * 1024 * 1024}\n"
    )
    status, _ = await raw_request(client, head)
    assert status == 401
    status, _ = await raw_request(client, head + "X-Hub-Signature-256: sha256=not-hex\n")
    assert status == 401


async def test_a_trickled_delivery_is_cut_off_with_408(start_app, deliveries, db):
    """Finding 8: a body trickled at 1 byte / 5 s stayed open 94 s; GHAPP_BODY_TIMEOUT bounds the read."""
    client = await start_app(body_timeout=0.2)
    before = await snapshot(db)
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    head = "POST /webhooks HTTP/1.1\nHost: x\n" + "".join(f"{k}: {v}\n" for k, v in headers.items())
    status, reply = await raw_request(client, head + f"Content-Length: {len(body)}\n", body[:100])
    assert status == 408 and b"not received within" in reply
    assert await snapshot(db) == before


async def test_a_client_that_goes_away_mid_body_is_not_a_database_outage(settings, deliveries, caplog):
    """Finding 8: a disconnect while the body was read (aiohttp raises ConnectionResetError, an OSError) counted as
    `unavailable` and was logged as a database outage. The request is built in memory: the disconnect happens
    exactly while the body is read."""
    app = web.Application()
    app[keys.SETTINGS] = settings
    app[keys.READY] = asyncio.Event()
    metrics = setup_metrics(app)
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body[:100])
    payload.set_exception(ConnectionResetError("Connection lost"))
    request = make_mocked_request(
        "POST", "/webhooks", headers={**headers, "Content-Length": str(len(body))}, app=app, payload=payload
    )

    response = await counting_deliveries(receive)(request)

    assert response.status == 400
    assert metrics.deliveries.labels("unknown", "disconnected")._value.get() == 1
    assert metrics.deliveries.labels("unknown", "unavailable")._value.get() == 0
    assert not [r for r in caplog.records if "database" in r.getMessage()]


async def test_unsigned_deliveries_add_no_metric_labels(start_app, deliveries):
    """Finding 8: an unsigned request with an invented X-GitHub-Event added a label value (offline, no secret)."""
    client = await start_app(webhook_secret=None)
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    headers["X-GitHub-Event"] = "invented_by_a_stranger"
    del headers["X-Hub-Signature-256"]
    await send(client, body, headers)
    text = await (await client.get("/metrics")).text()
    assert "invented_by_a_stranger" not in text and 'event="unknown"' in text


async def test_offline_without_a_secret_accepts_unsigned_deliveries(start_app, deliveries):
    client = await start_app(webhook_secret=None)
    body, headers = deliveries.signed("pull_request", deliveries.pull_request("opened"))
    del headers["X-Hub-Signature-256"]
    status, reply = await send(client, body, headers)
    assert status == 202, reply


# --- accepted: desired state -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "ready_for_review"])
async def test_present_actions_record_desired_present(start_app, deliveries, db, action):
    client = await start_app()
    delivery_id = str(uuid.uuid4())
    status, reply = await post(client, deliveries, "pull_request", pr_event(deliveries, action), delivery_id)

    assert status == 202, reply
    assert reply["accepted"] == delivery_id
    env = await environment(db, reply["environment_id"])
    assert (env["desired"], env["desired_sha"], env["generation"], env["observed_generation"]) == ("present", SHA, 1, 0)
    assert (env["repo_id"], env["repository"], env["pr_number"]) == (REPO_ID, "Codertocat/Hello-World", 2)
    assert (env["status"], env["is_fork"], env["head_ref"], env["author"]) == (
        "pending",
        False,
        "changes",
        "Codertocat",
    )
    assert env["installation_id"] == 1 and env["expires_at"] is not None
    assert env["name"] == f"pr-2-hello-world-{env['id']}"
    assert await db.fetchval("SELECT event FROM deliveries WHERE id = $1", delivery_id) == "pull_request"


async def test_generation_is_bumped_only_when_desired_or_sha_changes(start_app, deliveries, db):
    client = await start_app()
    steps = [  # (action, sha, expected desired, expected generation)
        ("opened", fake_sha(1), "present", 1),
        ("reopened", fake_sha(1), "present", 1),
        ("synchronize", fake_sha(2), "present", 2),
        ("ready_for_review", fake_sha(2), "present", 2),
        ("synchronize", fake_sha(2), "present", 2),
        ("closed", fake_sha(2), "absent", 3),
        ("closed", fake_sha(2), "absent", 3),
        ("reopened", fake_sha(2), "present", 4),
        ("synchronize", fake_sha(3), "present", 5),
    ]
    env_ids = set()
    for action, sha, desired, generation in steps:
        status, reply = await post(client, deliveries, "pull_request", pr_event(deliveries, action, sha=sha))
        assert status == 202, (action, reply)
        env_ids.add(reply["environment_id"])
        env = await environment(db, reply["environment_id"])
        assert (env["desired"], env["desired_sha"], env["generation"]) == (desired, sha, generation), action
    assert len(env_ids) == 1
    assert await db.fetchval("SELECT count(*) FROM environments") == 1
    assert await db.fetchval("SELECT count(*) FROM deliveries") == len(steps)


async def test_closed_on_a_known_pr_records_desired_absent(start_app, deliveries, db):
    client = await start_app()
    _, opened = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    before = await environment(db, opened["environment_id"])
    status, reply = await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))

    assert status == 202, reply
    assert reply["environment_id"] == opened["environment_id"]
    env = await environment(db, reply["environment_id"])
    assert (env["desired"], env["desired_sha"], env["generation"]) == ("absent", SHA, 2)
    assert env["expires_at"] == before["expires_at"], "closing must not extend the TTL"


async def test_closing_an_unknown_pr_is_200_and_writes_no_environment(start_app, deliveries, db):
    client = await start_app()
    status, reply = await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    assert status == 200, reply
    assert await db.fetchval("SELECT count(*) FROM environments") == 0


async def test_prs_of_different_repositories_get_different_environments(start_app, deliveries, db):
    client = await start_app()
    _, a = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    _, b = await post(
        client,
        deliveries,
        "pull_request",
        deliveries.pull_request("opened", repo_id=42, repository="other/Hello-World"),
    )
    _, c = await post(client, deliveries, "pull_request", deliveries.pull_request("opened", number=3))
    assert len({a["environment_id"], b["environment_id"], c["environment_id"]}) == 3
    names = await db.fetch("SELECT name FROM environments")
    assert len({r["name"] for r in names}) == 3


# --- duplicates and ignored events -----------------------------------------------------------------------------------


async def test_redelivery_is_a_200_duplicate_and_changes_nothing(start_app, deliveries, db):
    client = await start_app()
    first = str(uuid.uuid4())
    opened = deliveries.pull_request("opened", sha=fake_sha(1))
    status, reply = await post(client, deliveries, "pull_request", opened, first)
    assert status == 202
    env_id = reply["environment_id"]
    status, _ = await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fake_sha(2)))
    assert status == 202
    before = await snapshot(db)

    status, reply = await post(client, deliveries, "pull_request", opened, first)  # GitHub's "Redeliver"

    assert (status, reply) == (200, {"duplicate": first})
    assert await snapshot(db) == before
    env = await environment(db, env_id)
    assert (env["desired_sha"], env["generation"]) == (fake_sha(2), 2)


async def test_redelivered_close_does_not_bump_the_generation(start_app, deliveries, db):
    client = await start_app()
    await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    close_id = str(uuid.uuid4())
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed"), close_id)
    _, reopened = await post(client, deliveries, "pull_request", deliveries.pull_request("reopened"))
    before = await snapshot(db)

    status, reply = await post(client, deliveries, "pull_request", deliveries.pull_request("closed"), close_id)

    assert (status, reply) == (200, {"duplicate": close_id})
    assert await snapshot(db) == before
    env = await environment(db, reopened["environment_id"])
    assert (env["desired"], env["generation"]) == ("present", 3)


@pytest.mark.parametrize(
    ("event", "fixture", "ignored"),
    [
        ("push", "push.push", "push"),
        ("ping", "ping.ping", "ping"),
        ("installation", "installation.created", "installation.created"),
    ],
)
async def test_unhandled_events_are_200_ignored_and_write_nothing(start_app, deliveries, db, event, fixture, ignored):
    client = await start_app()
    status, reply = await post(client, deliveries, event, Deliveries.payload(fixture))
    assert (status, reply) == (200, {"ignored": ignored})
    assert await snapshot(db) == ([], [])


async def test_a_label_on_a_pull_request_without_environment_makes_none(start_app, deliveries, db):
    client = await start_app()
    status, reply = await post(client, deliveries, "pull_request", Deliveries.payload("pull_request.labeled"))
    assert (status, reply) == (200, {"ignored": "no environment for this pull request"})
    assert (await snapshot(db))[0] == []


# --- forks -----------------------------------------------------------------------------------------------------------


def fork_pr(deliveries: Deliveries, action: str, kind: str) -> dict:
    """A PR from a fork (`fork`) or from a fork that was deleted since (`deleted`: GitHub sends `head.repo: null`)."""
    data = deliveries.pull_request(action, fork=True)
    if kind == "deleted":
        data["pull_request"]["head"]["repo"] = None
    return data


@pytest.mark.parametrize("kind", ["fork", "deleted"])
@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
async def test_fork_prs_are_not_deployed_by_default(start_app, deliveries, db, kind, action):
    """A fork PR is recorded (so the PR can say that a maintainer's approval is needed) but nothing is deployed."""
    client = await start_app()
    assert client.app[keys.SETTINGS].allow_forks is False
    status, reply = await post(client, deliveries, "pull_request", fork_pr(deliveries, action, kind))
    assert status == 202, reply
    env = await environment(db, reply["environment_id"])
    assert (env["desired"], env["desired_sha"], env["head_sha"], env["is_fork"]) == ("absent", None, SHA, True)
    assert env["observed_generation"] == env["generation"], "nothing for a worker to do"


@pytest.mark.parametrize("kind", ["fork", "deleted"])
async def test_fork_prs_are_deployed_when_allowed(start_app, deliveries, db, kind):
    client = await start_app(allow_forks=True)
    status, reply = await post(client, deliveries, "pull_request", fork_pr(deliveries, "opened", kind))
    assert status == 202, reply
    env = await environment(db, reply["environment_id"])
    assert (env["desired"], env["desired_sha"], env["is_fork"]) == ("present", SHA, True)


# --- rejected requests: status and an untouched database -------------------------------------------------------------


def _opened(deliveries: Deliveries, **changes) -> tuple[bytes, dict[str, str]]:
    return deliveries.signed("pull_request", deliveries.pull_request("opened", number=7, sha=fake_sha(7)), **changes)


def _signed_body(deliveries: Deliveries, body: bytes, event: str = "pull_request", **headers) -> tuple:
    return body, {**deliveries.headers(event, body), **headers}


def _signed_data(deliveries: Deliveries, change) -> tuple:
    data = deliveries.pull_request("opened", number=7, sha=fake_sha(7))
    change(data)
    return deliveries.signed("pull_request", data)


def _bad_signature(d):
    body, headers = _opened(d)
    return body, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}


def _missing_signature(d):
    body, headers = _opened(d)
    del headers["X-Hub-Signature-256"]
    return body, headers


def _empty_signature(d):
    body, headers = _opened(d)
    return body, {**headers, "X-Hub-Signature-256": ""}


def _signature_without_prefix(d):
    body, headers = _opened(d)
    return body, {**headers, "X-Hub-Signature-256": headers["X-Hub-Signature-256"].removeprefix("sha256=")}


def _other_secret(d):
    body, headers = _opened(d)
    return body, {**headers, "X-Hub-Signature-256": sign(body, "another secret")}


def _changed_after_signing(d):
    body, headers = _opened(d)
    return body.replace(fake_sha(7).encode(), fake_sha(8).encode()), headers


def _with_header(signed: tuple[bytes, dict[str, str]], name: str, value: str) -> tuple[bytes, dict[str, str]]:
    body, headers = signed  # one delivery: every call of `_opened` stamps a new `updated_at`, so a new body
    return body, {**headers, name: value}


def _without_header(name):
    def make(d):
        body, headers = _opened(d)
        del headers[name]
        return body, headers

    return make


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value

    return lambda d: _signed_data(d, change)


def _delete(path: str):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        del target[last]

    return lambda d: _signed_data(d, change)


def _same_repo_id(repo_id: int):
    def change(data):
        data["repository"]["id"] = data["pull_request"]["head"]["repo"]["id"] = repo_id

    return change


REJECTED = {
    "bad signature": (401, _bad_signature),
    "missing signature": (401, _missing_signature),
    "empty signature": (401, _empty_signature),
    "signature without sha256= prefix": (401, _signature_without_prefix),
    "signed with another secret": (401, _other_secret),
    "body changed after signing": (401, _changed_after_signing),
    "invalid JSON": (400, lambda d: _signed_body(d, b'{"action": "opened", "number": ')),
    "not UTF-8": (400, lambda d: _signed_body(d, b'{"action": "opened\xff"}')),
    "empty body": (400, lambda d: _signed_body(d, b"")),
    "JSON array": (400, lambda d: _signed_body(d, b'[{"action": "opened"}]')),
    "JSON string": (400, lambda d: _signed_body(d, b'"opened"')),
    "JSON null": (400, lambda d: _signed_body(d, b"null")),
    "missing X-GitHub-Event": (400, _without_header("X-GitHub-Event")),
    "missing X-GitHub-Delivery": (400, _without_header("X-GitHub-Delivery")),
    "blank X-GitHub-Delivery": (400, lambda d: _with_header(_opened(d), "X-GitHub-Delivery", "  ")),
    "X-GitHub-Delivery over 200 characters": (400, lambda d: _opened(d, delivery_id="d" * 201)),
    "text/plain content type": (400, lambda d: _signed_body(d, _opened(d)[0], **{"Content-Type": "text/plain"})),
    "octet-stream content type": (
        400,
        lambda d: _signed_body(d, _opened(d)[0], **{"Content-Type": "application/octet-stream"}),
    ),
    "unknown charset": (
        400,
        lambda d: _signed_body(d, _opened(d)[0], **{"Content-Type": "application/json; charset=no-such"}),
    ),
    "JSON nested too deep": (400, lambda d: _signed_body(d, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
    "action is a list": (400, _set("action", ["opened"])),
    "action is an object": (400, _set("action", {"opened": True})),
    "action is null": (400, _set("action", None)),
    "pull_request is null": (400, _set("pull_request", None)),
    "pull_request is a list": (400, _set("pull_request", [])),
    "head.sha missing": (400, _delete("pull_request.head.sha")),
    "head missing": (400, _delete("pull_request.head")),
    "head.sha not hex": (400, _set("pull_request.head.sha", "z" * 40)),
    "head.sha abbreviated": (400, _set("pull_request.head.sha", fake_sha(7)[:7])),
    "head.sha a number": (400, _set("pull_request.head.sha", 12345)),
    "head.ref missing": (400, _delete("pull_request.head.ref")),
    "number a string": (400, _set("number", "7")),
    "number a boolean": (400, _set("number", True)),
    "number a float": (400, _set("number", 7.0)),
    "repository.id a string": (400, _set("repository.id", "186853002")),
    "repository missing": (400, _delete("repository")),
    "number beyond int32": (400, _set("number", 2**31)),
    "repository.id beyond int64": (400, lambda d: _signed_data(d, _same_repo_id(2**63))),
}


@pytest.mark.parametrize(("expected", "make"), REJECTED.values(), ids=REJECTED.keys())
async def test_rejected_requests_change_nothing(start_app, deliveries, db, expected, make):
    client = await start_app()
    status, _ = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    assert status == 202
    before = await snapshot(db)

    status, reply = await send(client, *make(deliveries))

    assert status == expected, reply
    assert isinstance(reply, dict) and "error" in reply, reply
    assert await snapshot(db) == before


async def test_body_over_25_mb_is_413_and_changes_nothing(start_app, deliveries, db):
    client = await start_app()
    before = await snapshot(db)
    data = deliveries.pull_request("opened")
    data["padding"] = "x" * MAX_BODY
    status, reply = await send(client, *deliveries.signed("pull_request", data))
    assert status == 413, reply
    assert await snapshot(db) == before


async def test_body_of_exactly_25_mb_is_accepted(start_app, deliveries, db):
    client = await start_app()
    body = json.dumps(deliveries.pull_request("opened")).encode()
    body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
    assert len(body) == MAX_BODY
    status, reply = await send(client, body, deliveries.headers("pull_request", body))
    assert status == 202, reply


async def test_database_unreachable_is_503_and_ignored_events_still_200(
    start_app, settings, deliveries, aiohttp_client
):
    app = create_app(settings.replace(database_url="postgresql://nobody@127.0.0.1:1/none"), workers=False)
    client = await aiohttp_client(app)
    status, reply = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    assert status == 503, reply
    status, reply = await post(client, deliveries, "ping", Deliveries.payload("ping.ping"))
    assert (status, reply) == (200, {"ignored": "ping"})


# --- hostile text ----------------------------------------------------------------------------------------------------


async def test_hostile_head_ref_is_stored_truncated_and_deploys(start_app, deliveries, db, tmp_path):
    marker = tmp_path / "pwned"
    hostile = (
        f"feature/$(touch {marker});`touch {marker}`|&&>/dev/null<'\"\\ \t\n"
        "ünïcödé-🚀-\u202eRTL-%s-{{7*7}}-${{jndi:x}}" + "x" * 10 * 1024
    )
    data = deliveries.pull_request("opened")
    data["pull_request"]["head"]["ref"] = hostile
    data["pull_request"]["title"] = hostile
    data["pull_request"]["user"]["login"] = "'; DROP TABLE environments; --"
    client = await start_app(workers=True)

    status, reply = await post(client, deliveries, "pull_request", data)

    assert status == 202, reply
    env = await environment(db, reply["environment_id"])
    assert env["head_ref"] == hostile[:255]
    assert env["title"] == hostile[:500]
    assert env["author"] == "'; DROP TABLE environments; --"
    active = await wait_for(lambda: _active(db, env["id"]), what="the hostile PR deployed")
    assert active["deployed_sha"] == SHA
    resp = await client.get(f"/api/environments/{env['id']}")
    assert resp.status == 200
    assert not marker.exists()


async def _active(db, env_id):
    env = await environment(db, env_id)
    return env if env["status"] == "active" and env["observed_generation"] == env["generation"] else None


@pytest.mark.parametrize("text", ["nul\x00byte", "lone \ud800 surrogate"], ids=["NUL", "lone surrogate"])
@pytest.mark.parametrize("field", ["head.ref", "title"])
async def test_text_postgresql_cannot_store_is_rejected_or_cleaned_never_500(start_app, deliveries, db, text, field):
    client = await start_app()
    data = deliveries.pull_request("opened")
    *parents, last = field.split(".")
    target = data["pull_request"]
    for key in parents:
        target = target[key]
    target[last] = text
    before = await snapshot(db)

    status, reply = await post(client, deliveries, "pull_request", data)

    assert status in (202, 400), (status, reply)
    if status == 400:
        assert await snapshot(db) == before
    else:
        env = await environment(db, reply["environment_id"])
        stored = env[{"head.ref": "head_ref", "title": "title"}[field]]
        assert "\x00" not in stored and stored.isprintable()
