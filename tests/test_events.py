"""`pull_request` payload → desired state (pure), on the real deliveries and variants derived from them."""

from __future__ import annotations

import copy

import pytest

from ghapp.core.contract import Desired
from ghapp.core.model import PullRequestChange
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
    change = change_from_payload(Deliveries.payload(f"pull_request.{name}"), desired)
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
    )


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
