"""The rules of ghapp/core/policy.py and the desired-state rule, each tested on the few values it decides on."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ghapp.core.contract import Action, Desired, Status
from ghapp.core.model import CurrentDesire, Environment, PullRequestChange, desired_state
from ghapp.core.policy import (
    awaiting_approval,
    backoff,
    expiry,
    fork_gated,
    is_fork,
    may_run,
    next_action,
    preview_ttl,
    reminder_due,
    retry_delay,
)
from ghapp.core.pulls import change_from_payload, change_from_pull
from tests.support import Deliveries

pytestmark = pytest.mark.fast

A, B, C = "a" * 40, "b" * 40, "c" * 40


# --- what a worker does next ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "provisioned", "action"),
    [
        (Desired.PRESENT, False, Action.APPLY),
        (Desired.PRESENT, True, Action.APPLY),
        (Desired.ABSENT, True, Action.DESTROY),  # a failed apply may have left resources behind: destroy them too
        (Desired.ABSENT, False, None),  # closed before anything was created
    ],
)
def test_next_action(desired, provisioned, action):
    assert next_action(desired, provisioned) is action


# --- forks -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "base", "fork"),
    [(1, 1, False), (2, 1, True), (None, 1, True)],  # None: the fork was deleted
)
def test_is_fork(head, base, fork):
    assert is_fork(head, base) is fork


@pytest.mark.parametrize(("fork", "allow", "gated"), [(False, False, False), (True, False, True), (True, True, False)])
def test_fork_gated(fork, allow, gated):
    assert fork_gated(fork, allow) is gated


def change(sha: str = A, desired: Desired = Desired.PRESENT) -> PullRequestChange:
    return PullRequestChange(repo_id=1, repository="o/r", pr_number=2, desired=desired, head_sha=sha)


@pytest.mark.parametrize(
    ("gated", "current", "wanted", "expected"),
    [
        (False, None, change(A), (Desired.PRESENT, A)),
        (True, None, change(A), (Desired.ABSENT, None)),  # a new fork PR: nothing until approved
        (True, CurrentDesire(Desired.ABSENT, None, A), change(A), (Desired.PRESENT, A)),  # its commit was approved
        (True, CurrentDesire(Desired.PRESENT, A, A), change(B), (Desired.PRESENT, A)),  # a new push keeps what runs
        (True, CurrentDesire(Desired.PRESENT, A, A), change(B, Desired.ABSENT), (Desired.ABSENT, A)),  # closed
        (False, CurrentDesire(Desired.PRESENT, A, None), change(B), (Desired.PRESENT, B)),
    ],
)
def test_desired_state(gated, current, wanted, expected):
    assert desired_state(wanted, current, gated) == expected


def environment(**fields) -> Environment:
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    values = {
        "id": 1,
        "repo_id": 1,
        "repository": "o/r",
        "pr_number": 2,
        "name": "pr-2-r-1",
        "installation_id": 1,
        "head_ref": "h",
        "author": "x",
        "title": "t",
        "pr_url": "",
        "is_fork": True,
        "desired": Desired.ABSENT,
        "desired_sha": None,
        "generation": 1,
        "observed_generation": 1,
        "status": Status.PENDING,
        "provisioned": False,
        "deployed_sha": None,
        "preview_url": None,
        "outputs": {},
        "progress": None,
        "lease_owner": None,
        "lease_until": None,
        "attempts": 0,
        "next_attempt_at": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "last_activity_at": now,
        "expires_at": None,
        "head_sha": A,
    }
    return Environment(**{**values, **fields})


@pytest.mark.parametrize(
    ("fields", "allow", "awaiting"),
    [
        ({}, False, True),  # a fork's head nobody approved
        ({}, True, False),  # GHAPP_ALLOW_FORKS
        ({"is_fork": False}, False, False),
        ({"approved_sha": A}, False, False),
        ({"desired_sha": A, "desired": Desired.PRESENT}, False, False),  # deployed already
        ({"status": Status.DESTROYING}, False, False),
    ],
)
def test_awaiting_approval(fields, allow, awaiting):
    assert awaiting_approval(environment(**fields), allow) is awaiting


# --- who may run a command --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "permission", "author", "fork", "allowed"),
    [
        ("deploy", "write", "someone", False, True),
        ("deploy", "maintain", "someone", True, True),
        ("deploy", "admin", "someone", True, True),
        ("deploy", "read", "author", False, False),  # the author may not deploy: that is a maintainer's approval
        ("redeploy", "read", "author", False, True),
        ("destroy", "none", "AUTHOR", False, True),  # logins compare case-insensitively
        ("redeploy", "read", "author", True, False),  # a fork's author: no
        ("destroy", "read", "someone", False, False),
        ("help", "none", "someone", True, True),
        ("keep", "read", "author", False, True),  # the author may keep their own preview, like redeploy
        ("keep off", "none", "Author", False, True),
        ("keep", "write", "someone", True, True),
        ("keep", "read", "someone", False, False),
        ("keep", "read", "author", True, False),  # a fork's author: no
        ("keep off", "read", "someone", False, False),
    ],
)
def test_may_run(command, permission, author, fork, allowed):
    assert may_run(command, permission, author, "author", fork) is allowed


# --- a pull request from a webhook or from the REST API is the same change --------------------------------------------


def test_change_from_pull_equals_change_from_payload():
    payload = Deliveries.payload("pull_request.opened")
    rest = copy.deepcopy(payload["pull_request"])
    from_payload = change_from_payload(payload, Desired.PRESENT)
    assert from_payload.action == "opened"  # the one thing only a webhook knows
    assert change_from_pull(rest, Desired.PRESENT, payload["installation"]["id"]) == dataclasses.replace(
        from_payload, action=""
    )


def test_change_from_pull_of_a_fork_whose_repository_was_deleted():
    rest = copy.deepcopy(Deliveries.payload("pull_request.opened")["pull_request"])
    rest["head"]["repo"] = None
    assert change_from_pull(rest, Desired.PRESENT, None).is_fork


# --- backoff ---------------------------------------------------------------------------------------------------------


@given(st.integers(1, 100), st.floats(0.01, 100), st.floats(0.01, 1e4))
def test_backoff_grows_then_stays_at_the_cap(attempt, base, cap):
    assert backoff(attempt, base, cap) <= cap
    assert backoff(attempt + 1, base, cap) >= backoff(attempt, base, cap)


def test_backoff_doubles_from_the_base():
    assert [backoff(n, 0.5, 30) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(("attempts", "delay"), [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160)])
def test_retry_delay_is_exponential(attempts, delay):
    assert retry_delay(attempts, base=10, cap=900, max_attempts=6) == delay


def test_retry_delay_is_capped():
    assert [retry_delay(n, base=10, cap=60, max_attempts=10) for n in range(1, 10)] == [
        10,
        20,
        40,
        60,
        60,
        60,
        60,
        60,
        60,
    ]


@pytest.mark.parametrize("attempts", [6, 7, 100])
def test_retry_delay_stops_at_the_limit(attempts):
    assert retry_delay(attempts, base=10, cap=900, max_attempts=6) is None


def test_retry_delay_with_a_limit_of_one():
    assert retry_delay(1, base=10, cap=900, max_attempts=1) is None


@given(st.integers(1, 200), st.floats(0.01, 1e4), st.floats(0.01, 1e5), st.integers(1, 200))
def test_retry_delay_never_exceeds_the_cap(attempts, base, cap, max_attempts):
    delay = retry_delay(attempts, base, cap, max_attempts)
    if attempts >= max_attempts:
        assert delay is None
    else:
        assert 0 < delay <= cap


# --- when a preview expires ------------------------------------------------------------------------------------------

T = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("operator", "repository", "ttl"),
    [(72 * 3600.0, None, 72 * 3600.0), (72 * 3600.0, 1800.0, 1800.0), (60.0, 7 * 86400.0, 7 * 86400.0)],
)
def test_the_repositorys_ttl_wins_over_the_operators(operator, repository, ttl):
    assert preview_ttl(operator, repository) == ttl


def test_a_preview_expires_its_ttl_after_the_last_activity_unless_kept():
    assert expiry(T, 3600.0, keep=False) == T + dt.timedelta(hours=1)
    assert expiry(T, 48 * 3600.0, keep=False) == T + dt.timedelta(days=2)
    assert expiry(T, 3600.0, keep=True) is None


@pytest.mark.parametrize(
    ("expires_in", "due"),
    [
        (None, False),  # kept: never
        (3 * 3600, False),  # not yet
        (2 * 3600 + 1, False),
        (2 * 3600, True),  # exactly the warning ahead
        (60, True),
        (0, False),  # expiring now: the reaper's turn, no reminder
        (-60, False),
    ],
)
def test_the_reminder_is_due_within_the_warning_before_expiry(expires_in, due):
    expires_at = None if expires_in is None else T + dt.timedelta(seconds=expires_in)
    assert reminder_due(expires_at, 2 * 3600.0, T) is due
