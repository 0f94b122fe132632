"""`pull_request` payload → desired state (pure), on the real deliveries and variants derived from them."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from ghapp.core.contract import Desired
from ghapp.core.model import AppliedEvent, PullRequestChange, outdated
from ghapp.core.payload import MalformedPayload, field
from ghapp.core.pulls import change_from_payload
from ghapp.web.events.pull_request import PRESENT_ACTIONS
from tests.support import Deliveries, fake_sha

pytestmark = pytest.mark.fast  # no PostgreSQL, Terraform or server: `pytest -m fast`

SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
PR_FIXTURES = ["opened", "opened.with-null-body", "reopened", "synchronize", "closed", "labeled"]


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries("unused")


@pytest.mark.parametrize("name", PR_FIXTURES)
@pytest.mark.parametrize("desired", list(Desired))
def test_real_payloads(name, desired):
    data = Deliveries.payload(f"pull_request.{name}")
    change = change_from_payload(data, desired)
    assert change == PullRequestChange(
        repo_id=186853002,
        repository="Codertocat/Hello-World",
        pr_number=2,
        desired=desired,
        head_sha=SHA,
        head_ref="changes",
        author="Codertocat",
        title="Update the README with new information.",
        pr_url="https://github.com/Codertocat/Hello-World/pull/2",
        installation_id=1,
        is_fork=False,
        updated_at=dt.datetime.fromisoformat(data["pull_request"]["updated_at"]),
        action=data["action"],
        base_ref="master",
        draft=False,
        labels=("bug",),
    )
    assert change.updated_at.tzinfo is not None


def test_present_actions():
    assert set(PRESENT_ACTIONS) == {"opened", "reopened", "synchronize", "ready_for_review"}


def test_payload_is_not_modified():
    data = Deliveries.payload("pull_request.opened")
    before = copy.deepcopy(data)
    change_from_payload(data, Desired.PRESENT)
    assert data == before


def test_derived_number_sha_and_repository(deliveries):
    data = deliveries.pull_request("synchronize", number=42, sha=fake_sha(1), repo_id=7, repository="acme/Shop")
    change = change_from_payload(data, Desired.PRESENT)
    assert (change.pr_number, change.head_sha, change.repo_id, change.repository, change.is_fork) == (
        42,
        fake_sha(1),
        7,
        "acme/Shop",
        False,
    )


def test_fork(deliveries):
    data = deliveries.pull_request("opened", fork=True)
    assert data["pull_request"]["head"]["repo"]["id"] != data["repository"]["id"]
    change = change_from_payload(data, Desired.PRESENT)
    assert change.is_fork is True
    assert (change.repo_id, change.repository) == (186853002, "Codertocat/Hello-World"), "identity is the base repo"


@pytest.mark.parametrize("repo", [None, "missing"])
def test_deleted_head_repository_counts_as_a_fork(deliveries, repo):
    """GitHub sends `head.repo: null` once the fork behind a PR is deleted."""
    data = deliveries.pull_request("closed", fork=True)
    if repo is None:
        data["pull_request"]["head"]["repo"] = None
    else:
        del data["pull_request"]["head"]["repo"]
    change = change_from_payload(data, Desired.ABSENT)
    assert change.is_fork is True and change.desired is Desired.ABSENT and change.head_sha == SHA


def test_number_from_pull_request_when_top_level_is_missing(deliveries):
    data = deliveries.pull_request("opened", number=9)
    del data["number"]
    assert change_from_payload(data, Desired.PRESENT).pr_number == 9


def test_optional_fields_missing_or_null(deliveries):
    data = deliveries.pull_request("opened")
    del data["installation"]
    pr = data["pull_request"]
    pr["user"] = None
    pr["title"] = None
    del pr["html_url"]
    change = change_from_payload(data, Desired.PRESENT)
    assert (change.installation_id, change.author, change.title, change.pr_url) == (None, "", "", "")


def test_long_text_is_truncated(deliveries):
    data = deliveries.pull_request("opened")
    hostile = "$(rm -rf /);`id`|&<>'\"\\ ünïcödé 🚀 " + "x" * 10 * 1024
    data["pull_request"]["head"]["ref"] = hostile
    data["pull_request"]["title"] = hostile
    change = change_from_payload(data, Desired.PRESENT)
    assert change.head_ref == hostile[:255] and change.title == hostile[:500]


def _without(path: str):
    def change(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return change


def _with(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return change


MALFORMED = {
    "no pull_request": _without("pull_request"),
    "pull_request null": _with("pull_request", None),
    "pull_request a list": _with("pull_request", []),
    "no head": _without("pull_request.head"),
    "head a string": _with("pull_request.head", "main"),
    "no head.sha": _without("pull_request.head.sha"),
    "head.sha null": _with("pull_request.head.sha", None),
    "head.sha a number": _with("pull_request.head.sha", 1234567),
    "head.sha not hex": _with("pull_request.head.sha", "g" * 40),
    "head.sha abbreviated": _with("pull_request.head.sha", SHA[:7]),
    "head.sha too long": _with("pull_request.head.sha", SHA + "0"),
    "head.sha with a newline": _with("pull_request.head.sha", SHA + "\n"),
    "head.sha uppercase": _with("pull_request.head.sha", SHA.upper()),
    "head.sha a branch name": _with("pull_request.head.sha", "refs/heads/main"),
    "no head.ref": _without("pull_request.head.ref"),
    "head.ref a list": _with("pull_request.head.ref", ["changes"]),
    "head.repo.id a string": _with("pull_request.head.repo.id", "186853002"),
    "no repository": _without("repository"),
    "no repository.id": _without("repository.id"),
    "repository.id a string": _with("repository.id", "186853002"),
    "repository.id a float": _with("repository.id", 186853002.0),
    "repository.id a boolean": _with("repository.id", True),
    "no repository.full_name": _without("repository.full_name"),
    "number a string": _with("number", "2"),
    "number a boolean": _with("number", True),
    "number null": _with("number", None),
    "installation.id a string": _with("installation.id", "1"),
    "user.login a number": _with("pull_request.user.login", 1),
    "title a number": _with("pull_request.title", 1),
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_payloads(deliveries, change):
    data = deliveries.pull_request("opened")
    change(data)
    with pytest.raises(MalformedPayload):
        change_from_payload(data, Desired.PRESENT)


def test_malformed_payload_is_a_value_error_naming_the_field(deliveries):
    data = deliveries.pull_request("opened")
    del data["pull_request"]["head"]["sha"]
    with pytest.raises(ValueError, match=r"pull_request\.head\.sha|head\.sha"):
        change_from_payload(data, Desired.PRESENT)


# --- field -----------------------------------------------------------------------------------------------------------

DATA = {"a": {"b": {"c": 1, "s": "x", "t": True, "z": 0, "e": "", "n": None, "l": [1]}}, "top": "v"}


@pytest.mark.parametrize(
    ("path", "kind", "value"),
    [
        ("top", str, "v"),
        ("a.b.c", int, 1),
        ("a.b.s", str, "x"),
        ("a.b.z", int, 0),
        ("a.b.e", str, ""),
        ("a.b.l", list, [1]),
        ("a.b", dict, DATA["a"]["b"]),
        ("a.b.c", (int, str), 1),
        ("a.b.s", (int, str), "x"),
        ("a.b.t", bool, True),
        ("a.b.t", (int, bool), True),
    ],
)
def test_field_returns_the_value(path, kind, value):
    assert field(DATA, path, kind) == value
    assert field(DATA, path, kind, optional=True) == value


@pytest.mark.parametrize("path", ["missing", "a.missing", "a.b.missing", "a.b.n", "a.missing.deeper"])
def test_field_missing_or_null(path):
    with pytest.raises(MalformedPayload, match="is missing"):
        field(DATA, path, int)
    assert field(DATA, path, int, optional=True) is None


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("a.b.c", str),
        ("a.b.s", int),
        ("a.b.t", int),  # bool is an int in Python, not in a payload
        ("a.b.t", (int, str)),
        ("a.b.c", float),
        ("a.b.l", dict),
        ("a", str),
    ],
)
def test_field_wrong_type(path, kind):
    with pytest.raises(MalformedPayload, match="wrong type"):
        field(DATA, path, kind)
    with pytest.raises(MalformedPayload, match="wrong type"):
        field(DATA, path, kind, optional=True)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"a": [1]}, "a.b"),
        ({"a": "text"}, "a.b"),
        ({"a": {"b": 1}}, "a.b.c"),
        ([], "a"),
        ("text", "a"),
        (None, "a"),
    ],
)
def test_field_through_a_non_object(data, path):
    with pytest.raises(MalformedPayload, match="expected an object"):
        field(data, path, int)
    with pytest.raises(MalformedPayload, match="expected an object"):
        field(data, path, int, optional=True)


def test_field_message_names_the_path():
    with pytest.raises(MalformedPayload, match=r"^pull_request\.head\.sha is missing$"):
        field({"pull_request": {"head": {}}}, "pull_request.head.sha", str)


# --- replays: the newest pull request state applied wins --------------------------------------------------------

T = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)


def _change(action: str, at: dt.datetime | None) -> PullRequestChange:
    wanted = Desired.ABSENT if action == "closed" else Desired.PRESENT
    return PullRequestChange(1, "o/r", 2, wanted, SHA, updated_at=at, action=action)


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened", "ready_for_review", "closed"])
@pytest.mark.parametrize("closed", [False, True])
def test_an_older_state_is_outdated_and_a_newer_one_is_not(action, closed):
    assert outdated(_change(action, T - SECOND), AppliedEvent(T, closed))
    assert not outdated(_change(action, T + SECOND), AppliedEvent(T, closed))


@pytest.mark.parametrize(
    ("applied_closed", "action", "applies"),
    [
        (False, "synchronize", True),  # the same delivery again (a redelivery or replay of the newest): idempotent
        (False, "closed", True),  # a push and a close in one second: the close is not lost
        (True, "closed", True),
        (True, "reopened", True),  # closed and reopened in one second
        (True, "synchronize", False),  # GitHub sends none for a closed PR: it was sent before the close
        (True, "opened", False),  # a replay of the opening in the second it was closed
        (True, "ready_for_review", False),
    ],
)
def test_the_same_second(applied_closed, action, applies):
    assert outdated(_change(action, T), AppliedEvent(T, applied_closed)) is not applies


def test_a_synchronize_and_a_closed_of_one_second_end_closed_in_either_order():
    sync, close = _change("synchronize", T), _change("closed", T)
    # in order: both apply, the close last
    assert not outdated(sync, None) and not outdated(close, AppliedEvent(T, closed=False))
    # the other way round: the close applies, the late synchronize does not reopen
    assert not outdated(close, None) and outdated(sync, AppliedEvent(T, closed=True))


@pytest.mark.parametrize("applied", [None, AppliedEvent(None, True)])
def test_without_times_nothing_is_outdated(applied):
    assert not outdated(_change("opened", T), applied)
    assert not outdated(_change("opened", None), AppliedEvent(T, True))


def test_times_are_compared_across_timezones(deliveries):
    data = deliveries.pull_request("synchronize", updated_at="2026-03-01T13:00:00+01:00")
    change = change_from_payload(data, Desired.PRESENT)
    assert change.updated_at == T and not outdated(change, AppliedEvent(T, False))


@pytest.mark.parametrize("value", ["yesterday", "2026-03-01T12:00:00", "", "2026-13-01T00:00:00Z", "9" * 100, 17])
def test_updated_at_must_be_a_time_with_a_zone(deliveries, value):
    data = deliveries.pull_request("opened")
    data["pull_request"]["updated_at"] = value
    with pytest.raises(MalformedPayload, match="updated_at"):
        change_from_payload(data, Desired.PRESENT)


def test_updated_at_may_be_missing(deliveries):
    data = deliveries.pull_request("opened")
    del data["pull_request"]["updated_at"]
    assert change_from_payload(data, Desired.PRESENT).updated_at is None
