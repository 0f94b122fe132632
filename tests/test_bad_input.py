"""Bad input, property-based (hypothesis): malformed, truncated, oversized and type-confused deliveries and headers
at `POST /webhooks` of the real app (real PostgreSQL, workers running the scripted module), and random text at the
command parser. Properties: never a 5xx, only the contract's statuses, nothing written by a request that is not
signed with the secret (nor by one rejected as malformed), and the app keeps serving and converging afterwards.

How hypothesis runs against one app: `@given` cannot wrap the async test itself (pytest-aiohttp's loop, server and
database would be shared by every example anyway, and a sync `@given` body cannot `await`). So the async test owns
the app on pytest's event loop and runs a sync `@given` function in a worker thread (`asyncio.to_thread`); each
example submits its I/O back to the loop with `asyncio.run_coroutine_threadsafe(...).result()` and checks the
properties in the thread. The loop stays free to serve the app and its workers meanwhile, and hypothesis keeps its
generation, shrinking and reporting of the falsifying example."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import re
import socket
import urllib.parse
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ghapp.core.commands import COMMANDS, KEEP_OFF, Parsed, parse_command
from ghapp.deliveries import sign
from ghapp.web import keys
from ghapp.web.app import create_app
from ghapp.web.webhooks import MAX_BODY
from tests.support import WEBHOOKS, Deliveries, environment, fake_sha, wait_for

APP_ID = 424242
REPO_ID = 186853002  # repository of every pull_request fixture (PR #2, installation 1)
EXAMPLES = 800  # webhook examples against the one app of the test (15-30 s on 2 cores, workers running)
UNKNOWN = re.compile(r"^[a-z0-9_-]{1,32}$|^\?$")
SHELL_META = set("$`;|&<>(){}[]'\"\\*!#~ \t\r\n")

# What the app reads from each event's payload: mutations aim here three times out of four.
READ_PATHS = {
    event: [p.split(".") for p in paths.split()]
    for event, paths in {
        "pull_request": "action number pull_request pull_request.number pull_request.head pull_request.head.sha "
        "pull_request.head.ref pull_request.head.repo pull_request.head.repo.id pull_request.user "
        "pull_request.user.login pull_request.title pull_request.html_url repository repository.id "
        "repository.full_name installation installation.id",
        "issue_comment": "action issue issue.number issue.pull_request comment comment.id comment.body comment.user "
        "comment.user.login comment.user.type comment.performed_via_github_app sender sender.login "
        "sender.type installation installation.id repository repository.id repository.full_name",
        "check_run": "action check_run check_run.external_id check_run.app check_run.app.id requested_action "
        "requested_action.identifier repository repository.id installation installation.id sender "
        "sender.login",
        "installation": "action installation installation.id",
        "installation_repositories": "action installation installation.id repositories_removed "
        "repositories_removed.0 repositories_removed.0.id",
        "ping": "action zen hook_id hook",
    }.items()
}

# Values that have broken parsers before: number-like and digit-like text, limits, NUL, lone surrogates, markup.
NASTY_TEXT = [
    "",
    " ",
    "\t",
    "\x00",
    "nul\x00byte",
    "\ud800",
    "\udcff",
    "²",
    "١٢",
    "①",
    "𝟙",
    "٣",
    "0",
    "-1",
    "1e3",
    "NaN",
    "null",
    "true",
    "[]",
    "{}",
    "9" * 19,
    "9" * 40,
    "opened",
    "closed",
    "requested_action",
    "redeploy",
    "destroy",
    fake_sha(1),
    fake_sha(1).upper(),
    "/preview deploy",
    "/preview $(touch /tmp/x)",
    "';DROP TABLE x;--",
    "🚀" * 40,
    "\u202eevil",
    "../../etc/passwd",
    "%s%n%x",
    "{{7*7}}",
    "x" * 70_000,
    "Bot",
    "ghapp[bot]",
]
NASTY_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]
# Number literals Python's json cannot turn into ints or floats it likes (substituted into the serialized body).
RAW_LITERALS = [
    "9" * 5000,
    "1e999",
    "-1e999",
    "-0",
    "1.0e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "[" * 5000 + "]" * 5000,
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    'application/json;charset="utf-8"',
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/json; charset=utf-32",
    "application/json; charset=utf-7",
    "application/json; charset=unicode_escape",
    "application/json; charset=rot13",
    "application/json; charset=base64",
    "application/json; charset=uu_codec",
    "application/json; charset=no-such",
    "application/json; charset=",
    "application/json;;;",
    "application/json; charset=ascii; charset=utf-8",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
    "*/*",
    "json",
]
EVENTS = [
    "pull_request",
    "issue_comment",
    "check_run",
    "installation",
    "installation_repositories",
    "ping",
    "push",
    "PULL_REQUEST",
    " pull_request",
    "pull_request\t",
    "pull_request.opened",
    "check_suite",
]
# What HTTP allows in a header value (HTAB, visible ASCII, obs-text); the HTTP parser answers 400 to the rest.
HEADER_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]
RESERVED_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    "expect",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-github-event",
    "x-github-delivery",
}


# --- base payloads: the real deliveries, and variants derived from them that reach deeper --------------------------


def base_payloads(known_env_id: int) -> list[tuple[str, dict]]:
    """(event, payload) for every real delivery, plus the cases they lack: a comment on a PR with a command, our
    own check run's buttons on a known environment, and repositories removed from the installation."""
    bases = [(path.name.split(".")[0], json.loads(path.read_text())) for path in sorted(WEBHOOKS.glob("*.json"))]
    pr = Deliveries.payload("pull_request.opened")
    for body in ("/preview deploy", "Looks good\n/preview redeploy", "/PREVIEW destroy", "/preview help", "/preview"):
        comment = copy.deepcopy(Deliveries.payload("issue_comment.created"))
        comment["issue"]["number"] = 2
        comment["issue"]["pull_request"] = {"url": pr["pull_request"]["url"]}
        comment["comment"]["body"] = body
        comment["installation"] = {"id": 1, "node_id": "x"}
        bases.append(("issue_comment", comment))
    for name, identifier in (("requested_action", "redeploy"), ("requested_action", "destroy"), ("rerequested", "")):
        check = copy.deepcopy(Deliveries.payload(f"check_run.{name}"))
        check["check_run"]["app"]["id"] = APP_ID
        check["check_run"]["external_id"] = str(known_env_id)
        check["repository"] = copy.deepcopy(pr["repository"])
        check["installation"] = {"id": 1, "node_id": "x"}
        if identifier:
            check["requested_action"] = {"identifier": identifier}
        bases.append(("check_run", check))
    removed = copy.deepcopy(Deliveries.payload("installation.deleted"))
    removed.update(
        action="removed",
        repository_selection="selected",
        repositories_added=[],
        repositories_removed=[{"id": REPO_ID + 1, "full_name": "Codertocat/Other", "private": False}],
    )
    bases.append(("installation_repositories", removed))
    return bases


# --- strategies ------------------------------------------------------------------------------------------------------


def header_text(**kwargs) -> st.SearchStrategy[bytes]:
    """Unicode text that HTTP can carry in a header value (UTF-8 encoded)."""
    chars = st.characters(blacklist_categories=("Cs", "Cc")) | st.just("\t")
    return st.text(chars, **kwargs).map(str.encode)


raw_header_bytes = st.lists(st.sampled_from(HEADER_BYTES), max_size=80).map(bytes)  # incl. invalid UTF-8

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(NASTY_INTS)
    | st.floats()
    | st.text(max_size=50)
    | st.sampled_from(NASTY_TEXT)
    | st.sampled_from(range(len(RAW_LITERALS))).map(lambda i: f"\x00RAW{i}\x00")
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)


def _pick_path(draw, event: str, data: Any) -> list:
    """A path to somewhere in `data`: mostly a field the app reads, else (and for events it ignores) a random descent."""
    if isinstance(data, dict) and event in READ_PATHS and draw(st.integers(0, 3)) > 0:
        return list(draw(st.sampled_from(READ_PATHS[event])))
    path, node = [], data
    while isinstance(node, (dict, list)) and node and not (path and draw(st.integers(0, 3)) == 0):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    return path


def _parent(data: Any, path: list) -> tuple[Any, Any] | None:
    node = data
    for key in path[:-1]:
        if isinstance(node, list) and str(key).isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return None
    last = path[-1]
    if isinstance(node, list) and str(last).isdigit() and int(last) < len(node):
        return node, int(last)
    return (node, last) if isinstance(node, dict) else None


def _serialize(data: Any, ascii_only: bool) -> bytes:
    text = json.dumps(data, ensure_ascii=ascii_only)
    for i, literal in enumerate(RAW_LITERALS):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', literal)
    return text.encode("utf-8", "surrogatepass")  # lone surrogates go out as the invalid UTF-8 a client may send


@dataclasses.dataclass
class Case:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    signed: bool  # signed with the app's secret over exactly this body
    note: str

    def __repr__(self) -> str:
        body = self.body if len(self.body) < 600 else self.body[:300] + b"..." + self.body[-200:]
        return f"Case({self.note}, headers={self.headers!r}, body[{len(self.body)}]={body!r})"

    def _repr_pretty_(self, printer, _cycle) -> None:  # how hypothesis prints a falsifying example
        printer.text(repr(self))


def _mutate(draw, event: str, base: dict, notes: list[str]) -> Any:
    """Up to three changes: a field replaced by any JSON value, or deleted; or the whole payload replaced."""
    data: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        path = _pick_path(draw, event, data)
        if not path:
            data = draw(json_values)
            notes.append("root=" + type(data).__name__)
            continue
        found = _parent(data, path)
        if found is None:
            continue
        parent, key = found
        if draw(st.integers(0, 3)) == 0:
            if isinstance(parent, dict):
                parent.pop(key, None)
            else:
                del parent[key]
            notes.append("del " + ".".join(map(str, path)))
        else:
            parent[key] = draw(json_values)
            notes.append("set " + ".".join(map(str, path)))
    return data


def _body(draw, data: Any, notes: list[str]) -> tuple[bytes, str]:
    """The payload serialized, then perhaps truncated, re-encoded, form-encoded or replaced by bytes."""
    body = _serialize(data, draw(st.booleans()))
    shape = draw(st.sampled_from(["truncated", "charset", "form", "garbage"]))
    notes.append(shape)
    if shape == "truncated":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))], "application/json"
    if shape == "charset":
        charset = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig"]))
        text = body.decode("utf-8", "surrogatepass")
        return text.encode(
            charset, "surrogatepass" if charset.startswith("utf") else "replace"
        ), f"application/json; charset={charset}"
    if shape == "form":
        field = draw(st.sampled_from(["payload", "payload", "data", ""]))
        return urllib.parse.urlencode({field: body}).encode(), "application/x-www-form-urlencoded"
    return draw(st.binary(max_size=300)), "application/json"


def _signature(draw, mode: str, body: bytes, secret: str) -> tuple[bytes, bytes] | None:
    """The signature header for `mode` (one of SIGNED or UNSIGNED below), or None for no header."""
    digest256 = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    digest1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    value = {
        "sha256": lambda: sign(body, secret).encode(),
        "sha1": lambda: b"sha1=" + digest1.encode(),
        "sha1 in the sha256 header": lambda: b"sha1=" + digest1.encode(),
        "empty": lambda: b"",
        "other secret": lambda: sign(body, secret + "x").encode(),
        "other body": lambda: sign(body + b" ", secret).encode(),
        "no prefix": lambda: digest256.encode(),
        "uppercase hex": lambda: b"sha256=" + digest256.upper().encode(),
        "truncated hex": lambda: b"sha256=" + digest256[:-1].encode(),
        "prefix only": lambda: b"sha256=",
        "sha512": lambda: b"sha512=" + hmac.new(secret.encode(), body, hashlib.sha512).hexdigest().encode(),
        "random": lambda: draw(header_text(max_size=80)),
        "non-ascii": lambda: b"sha256=" + digest256[:-1].encode() + "é".encode(),
        "raw bytes": lambda: draw(raw_header_bytes),
        "missing": lambda: None,
    }[mode]()
    if value is None:
        return None
    return (b"X-Hub-Signature" if mode == "sha1" else b"X-Hub-Signature-256"), value


SIGNED = ("sha256", "sha1", "sha1 in the sha256 header")  # signed with the secret over exactly the body sent
UNSIGNED = (
    "missing",
    "empty",
    "other secret",
    "other body",
    "no prefix",
    "uppercase hex",
    "truncated hex",
    "prefix only",
    "sha512",
    "random",
    "non-ascii",
    "raw bytes",
)


@st.composite
def cases(draw, bases: list[tuple[str, dict]], secret: str, seen_delivery: str) -> Case:
    """A real delivery mutated, mostly sent as GitHub would (signed, right headers) so that parsing is reached;
    a quarter of the examples also break the body encoding, the headers, or the signature."""
    event, base = draw(st.sampled_from(bases))
    notes = [f"{event}.{base.get('action')}"]
    data = _mutate(draw, event, base, notes)
    focus = draw(st.sampled_from(["payload"] * 5 + ["body", "headers", "signature"]))
    notes.append(focus)
    if focus == "body":
        body, content_type = _body(draw, data, notes)
    else:
        body, content_type = _serialize(data, draw(st.booleans())), "application/json"

    headers = {
        b"X-GitHub-Event": event.encode(),
        b"X-GitHub-Delivery": str(uuid.uuid4()).encode(),
        b"Content-Type": content_type.encode(),
    }
    if focus == "headers":
        choices = {
            b"X-GitHub-Event": st.sampled_from(EVENTS).map(str.encode) | header_text(max_size=120),
            b"X-GitHub-Delivery": st.sampled_from([b"", b"  ", b"\t", seen_delivery.encode()])
            | st.integers(150, 9000).map(lambda n: b"d" * n)
            | header_text(min_size=1, max_size=300),
            b"Content-Type": st.sampled_from(CONTENT_TYPES).map(str.encode) | header_text(max_size=100),
        }
        for name, strategy in choices.items():
            how = draw(st.sampled_from(["keep", "random", "raw bytes", "missing"]))
            if how != "keep":
                notes.append(f"{how} {name.decode()}")
                headers[name] = None if how == "missing" else draw(strategy if how == "random" else raw_header_bytes)
    pairs = [(draw(st.sampled_from([n, n.lower(), n.upper()])), v) for n, v in headers.items() if v is not None]
    if focus == "headers":
        extra_names = (
            st.text("abcdefghijklmnopqrstuvwxyz-_0123456789ABCXYZ", min_size=1, max_size=30)
            .filter(lambda n: n.lower() not in RESERVED_HEADERS)
            .map(str.encode)
        )
        pairs += draw(
            st.lists(
                st.tuples(
                    extra_names | st.sampled_from([b"X-GitHub-Event", b"X-GitHub-Delivery"]),
                    header_text(max_size=200) | raw_header_bytes,
                ),
                max_size=3,
            )
        )

    mode = (
        draw(st.sampled_from(UNSIGNED + SIGNED))
        if focus == "signature"
        else draw(st.sampled_from(["sha256"] * 4 + ["sha1", "sha1 in the sha256 header"]))
    )
    notes.append(f"signature {mode}")
    if (signature := _signature(draw, mode, body, secret)) is not None:
        pairs.append(signature)
    order = draw(st.permutations(range(len(pairs))))
    return Case([pairs[i] for i in order], body, mode in SIGNED, ", ".join(notes))


# --- talking HTTP byte by byte ----------------------------------------------------------------------------------------


async def raw_post(host: str, port: int, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, Any]:
    """POST /webhooks with exactly these header bytes; (status, JSON reply or the text of a non-JSON one)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [
            b"POST /webhooks HTTP/1.1",
            b"Host: ghapp.test",
            b"Connection: close",
            b"Content-Length: %d" % len(body),
            *(name + b": " + value for name, value in headers),
        ]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    status_line, _, rest = response.partition(b"\r\n")
    assert re.match(rb"HTTP/1\.[01] \d{3}", status_line), f"no HTTP response: {response[:200]!r}"
    payload = rest.partition(b"\r\n\r\n")[2]
    try:
        return int(status_line.split()[1]), json.loads(payload)
    except ValueError:
        return int(status_line.split()[1]), payload.decode(errors="replace")


# What only webhooks write (workers and the publisher change other columns meanwhile, legitimately).
SNAPSHOT = {
    "environments": "SELECT id, repo_id, repository, pr_number, name, installation_id, head_ref, author, title, "
    "pr_url, is_fork, desired, desired_sha, head_sha, approved_sha, generation, last_activity_at, "
    "expires_at, github_gone FROM environments ORDER BY id",
    "deliveries": "SELECT * FROM deliveries ORDER BY id",
    "commands": "SELECT id, source, command, unknown, installation_id, repo_id, repository, pr_number, comment_id, "
    "author, created_at FROM commands ORDER BY id",
}


async def snapshot(db) -> dict[str, list[dict]]:
    return {table: [dict(r) for r in await db.fetch(sql)] for table, sql in SNAPSHOT.items()}


def _private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _active(db, env_id: int):
    env = await environment(db, env_id)
    return env if env.get("status") == "active" and env["observed_generation"] == env["generation"] else None


# --- the webhook endpoint --------------------------------------------------------------------------------------------


class NoFiles:
    """Repositories without `.github/preview.yml`."""

    async def read(self, env, repository, path, ref):
        return None

    async def tarball(self, env, sha, destination):
        raise NotImplementedError


async def test_bad_deliveries_never_5xx_never_write_unsigned_and_the_app_keeps_converging(
    settings, aiohttp_client, deliveries, db, caplog
):
    caplog.set_level(logging.WARNING)
    # Online (so comments and check-run buttons are parsed and stored), with GitHub unreachable: publishing and
    # commands fail and retry in the background, provisioning goes on (the repositories' configuration comes from
    # a source that answers: no `.github/preview.yml`).
    app = create_app(
        settings.replace(
            app_id=str(APP_ID), private_key=_private_key(), github_api_url=f"http://127.0.0.1:{_closed_port()}"
        )
    )
    app[keys.REPOSITORY_FILES] = NoFiles()
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    loop = asyncio.get_running_loop()
    host, port = client.server.host, client.server.port

    seed_delivery = str(uuid.uuid4())
    status, seed = await _post(
        client, *deliveries.signed("pull_request", deliveries.pull_request("opened"), seed_delivery)
    )
    assert status == 202, seed

    # Oversized: 413 whether signed or not, with a Content-Length or chunked, and nothing written.
    before = await snapshot(db)
    big = json.dumps({**deliveries.pull_request("opened", number=9), "padding": "x" * MAX_BODY}).encode()
    for headers in (
        deliveries.headers("pull_request", big),
        {**deliveries.headers("pull_request", big), "X-Hub-Signature-256": "sha256=" + "0" * 64},
    ):
        assert (await _post(client, big, headers))[0] == 413
    assert (await _post(client, _chunks(big), deliveries.headers("pull_request", big)))[0] == 413
    assert await snapshot(db) == before

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    async def exercise(case: Case):
        before = await snapshot(db)
        status, reply = await raw_post(host, port, case.headers, case.body)
        return status, reply, before, await snapshot(db)

    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=cases(base_payloads(seed["environment_id"]), deliveries.secret, seed_delivery))
    def check(case: Case) -> None:
        status, reply, before, after = run(exercise(case))
        assert status < 500, (status, reply)
        assert status in (200, 202, 400, 401, 413), (status, reply)
        rejected_by_http = status == 400 and not isinstance(reply, dict)  # the HTTP parser, before the app
        if not case.signed:
            assert status == 401 or rejected_by_http, (status, reply)
        if status in (400, 401):
            assert after == before, "a rejected request changed the database"
            assert rejected_by_http or set(reply) == {"error"}, reply

    await asyncio.to_thread(check)

    # Still serving, and the workers still converge: a new PR deploys.
    status, reply = await _post(
        client,
        *deliveries.signed("pull_request", deliveries.pull_request("opened", number=4242, sha=fake_sha("after"))),
    )
    assert status == 202, reply
    await wait_for(lambda: _active(db, reply["environment_id"]), timeout=60, what="a PR deployed after the fuzzing")
    assert (await client.get("/healthz")).status == 200
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("ghapp", "asyncio")]
    assert not crashes, [f"{r.name}: {r.getMessage()}" for r in crashes]


async def test_known_type_confusions_are_answered_4xx_not_500(settings, aiohttp_client, deliveries, db):
    """Inputs the properties above found (kept as plain examples so each is reported on its own)."""
    app = create_app(
        settings.replace(
            app_id=str(APP_ID), private_key=_private_key(), github_api_url=f"http://127.0.0.1:{_closed_port()}"
        ),
        workers=False,
    )
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    status, seed = await _post(client, *deliveries.signed("pull_request", deliveries.pull_request("opened")))
    assert status == 202, seed
    bases = base_payloads(seed["environment_id"])
    comment = next(p for e, p in bases if e == "issue_comment" and "pull_request" in p["issue"])
    button = next(p for e, p in bases if e == "check_run" and p["check_run"]["app"]["id"] == APP_ID)

    def changed(payload: dict, path: str, value) -> dict:
        data = copy.deepcopy(payload)
        parent, key = _parent(data, path.split("."))
        parent[key] = value
        return data

    cases = {
        f"issue_comment {path}={value!r}": ("issue_comment", changed(comment, path, value), None)
        for path in ("comment.user", "sender")
        for value in ("octocat", ["octocat"], 5)
    }
    cases |= {
        f"check_run external_id={value!r}": ("check_run", changed(button, "check_run.external_id", value), None)
        for value in ("²", "①")
    }
    cases["X-GitHub-Delivery not UTF-8"] = ("pull_request", deliveries.pull_request("opened", number=5), b"\xff\xfe")
    wrong = []
    for name, (event, data, delivery) in cases.items():
        body, headers = deliveries.signed(event, data)
        if delivery is not None:
            headers.pop("X-GitHub-Delivery")
        pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
        pairs += [(b"X-GitHub-Delivery", delivery)] if delivery is not None else []
        before = await snapshot(db)
        status, reply = await raw_post(client.server.host, client.server.port, pairs, body)
        if status not in (200, 202, 400) or (status == 400 and await snapshot(db) != before):
            wrong.append(f"{name}: {status} {reply!r}")
    assert not wrong, "\n".join(wrong)


async def _ready(app):
    return app[keys.READY].is_set()


async def _post(client, body, headers) -> tuple[int, Any]:
    data = io.BytesIO(body) if isinstance(body, bytes) and len(body) > 1024 * 1024 else body
    resp = await client.post("/webhooks", data=data, headers=headers)
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


async def _chunks(body: bytes, size: int = 1 << 20):
    """The body as a stream: sent chunked, without a Content-Length the app could refuse up front."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


# --- the command parser ----------------------------------------------------------------------------------------------


def _check_shape(parsed: Parsed | None) -> None:
    if parsed is None:
        return
    assert isinstance(parsed, Parsed) and parsed.command in (*COMMANDS, KEEP_OFF), parsed
    if parsed.unknown is not None:
        assert parsed.command in ("help", "deploy") and parsed.sha is None, parsed
        assert UNKNOWN.match(parsed.unknown), parsed
        assert parsed.unknown == "?" or not SHELL_META & set(parsed.unknown), parsed


@hsettings(max_examples=1500, deadline=None, database=None)
@given(
    st.text()
    | st.text(st.sampled_from("/preview PREVIEW deploy\n\r\t `~$;|&()<>'\"\\?*-_ 0123ıİſK"))
    | st.none()
    | st.integers()
    | st.binary()
)
def test_parser_never_raises_and_returns_a_known_command(body):
    _check_shape(parse_command(body))


lines = st.one_of(
    st.text(max_size=40),
    # "/preview" spelled with case changes, look-alikes and Unicode case-folding equivalents, then a word
    st.tuples(
        st.sampled_from(["", " ", "\t", "> ", "x"]),
        st.tuples(
            *[st.sampled_from(choices) for choices in ("/", "pPр", "rRг", "eEеЕ", "vVѵ", "iIıİіІ", "eEеЕ", "wWԝ")]
        ).map("".join),
        st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\u3000", "x", "-", ":"]),
        st.text(max_size=20) | st.sampled_from([*COMMANDS, "DEPLOY", "$(reboot)", "`id`", "a;b|c&&d", "?", "x" * 50]),
    ).map("".join),
    st.sampled_from(["```", "~~~", "```sh", ""]),
)
newlines = st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\x0b", "\x0c", "\x85", "\x1e"])


def _starts_with_preview(line: str) -> bool:
    """A line beginning with `/preview`, case-insensitively in ASCII (DESIGN.md: "at the start of a line,
    case-insensitive"); look-alike letters are not `/preview`."""
    return line[:8].isascii() and line[:8].lower() == "/preview"


@hsettings(max_examples=1500, deadline=None, database=None)
@given(st.lists(st.tuples(lines, newlines), max_size=8).map(lambda ls: "".join(a + b for a, b in ls)))
@example("/prevıew deploy")  # U+0131 dotless i: re.IGNORECASE folds it to "i"
@example("/PREVİEW destroy")  # U+0130 dotted capital I
def test_parser_acts_only_on_a_line_starting_with_preview(body):
    parsed = parse_command(body)
    _check_shape(parsed)
    if not any(_starts_with_preview(line) for line in body.splitlines()):
        assert parsed is None, (body, parsed)


one_line = st.text(st.characters(blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), max_size=40)


@hsettings(max_examples=500, deadline=None, database=None)
@given(
    st.lists(
        one_line.filter(lambda s: not s.lower().startswith("/preview") and "```" not in s and "~~~" not in s),
        max_size=5,
    ),
    st.sampled_from(COMMANDS),
    st.sampled_from(["/preview", "/PREVIEW", "/Preview"]),
    st.sampled_from(" \t"),
    st.sampled_from([str.lower, str.upper, str.title]),
)
def test_a_preview_line_is_the_command_it_names(before, command, spelling, gap, case):
    body = "\n".join([*before, f"{spelling}{gap}{case(command)}", "thanks!"])
    assert parse_command(body) == Parsed(command)
