"""The fake's state: plain dataclasses for what GitHub stores, the records of calls, and small shared helpers."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests import github_clock

DOCS = "https://docs.github.com/rest"
LEVELS = ("admin", "maintain", "write", "triage", "read", "none")
RANK = {"read": 1, "write": 2, "admin": 3}
DEFAULT_PERMISSIONS = {
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}


@dataclasses.dataclass
class Call:
    """One request the fake received."""

    operation_id: str | None  # None: matched no operation of the description; "web/...": OAuth pages, archives
    method: str
    path: str
    query: dict[str, str]
    json: Any
    installation_id: int | None = None  # the installation whose token authenticated the call
    token: str | None = None  # the installation or user token (None for App JWT and unauthenticated calls)
    user: str | None = None  # the user whose `ghu_` token authenticated the call
    status: int = 0  # the status the fake answered with (304: answered from the client's ETag)
    at: float = dataclasses.field(default_factory=time.time)

    def __str__(self) -> str:
        query = f"?{urlencode(self.query)}" if self.query else ""
        return f"{self.method} {self.path}{query} ({self.operation_id or 'no operation'})"


@dataclasses.dataclass
class Commit:
    """A commit: its files (path -> bytes) and parents; `add_commit` makes them, any other SHA has no files."""

    sha: str
    files: dict[str, bytes]
    parents: list[str]
    message: str
    author: str
    at: float


@dataclasses.dataclass
class Repo:
    full_name: str
    id: int
    private: bool = False
    default_branch: str = "main"
    collaborators: dict[str, str] = dataclasses.field(default_factory=dict)  # login (lower) -> level
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    branches: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> SHA (besides PR heads)

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]

    @property
    def default_sha(self) -> str:
        return (
            self.branches.get(self.default_branch)
            or hashlib.sha1(f"{self.full_name}@{self.default_branch}".encode()).hexdigest()
        )


@dataclasses.dataclass
class Installation:
    id: int
    account: str
    repositories: list[str]  # full names
    suspended: bool = False
    permissions: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    account_type: str = "Organization"


_PULL_CHANGES = frozenset({"head_sha", "state", "title", "draft", "labels", "merged", "base_ref"})


@dataclasses.dataclass
class Pull:
    repo: str
    number: int
    id: int
    head_sha: str
    head_ref: str
    base_ref: str
    user: str
    fork: bool
    state: str
    title: str
    created_at: float
    merged: bool = False
    draft: bool = False
    labels: list[str] = dataclasses.field(default_factory=list)
    files: list[dict] | None = None  # changed files as pulls/list-files shows them; None: derived from commits
    commits: list[str] | None = None  # SHAs, oldest first; None: the head commit alone
    updated_at: float = 0.0  # GitHub's clock (tests/github_clock.py): set when made and at every change below

    def __post_init__(self) -> None:
        object.__setattr__(self, "updated_at", github_clock.tick().timestamp())

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _PULL_CHANGES and "updated_at" in self.__dict__:
            super().__setattr__("updated_at", github_clock.tick().timestamp())

    @property
    def head_repo(self) -> str:
        return f"{self.user}/{self.repo.split('/')[1]}" if self.fork else self.repo


@dataclasses.dataclass
class Token:
    """An installation access token the fake issued; `repositories` is None unless narrowed."""

    token: str
    installation_id: int
    expires_at: float
    repositories: set[str] | None
    permissions: dict[str, str]


@dataclasses.dataclass
class User:
    """A person who can sign in with GitHub (user-to-server tokens, `ghu_`)."""

    login: str
    id: int
    name: str | None = None
    email: str | None = None


@dataclasses.dataclass
class UserToken:
    token: str
    login: str
    expires_at: float
    refresh_token: str


@dataclasses.dataclass
class Failure:
    operation_id: str | None
    status: int
    times: int
    headers: dict[str, str]
    rate_limit: str | None


@dataclasses.dataclass
class Comment:
    id: int
    repo: str
    number: int
    body: str
    user: str
    by_app: bool
    author_association: str
    created_at: float
    updated_at: float


class Reply(Exception):
    """Ends a handler with a GitHub error response; `violation` also records the request as an app bug."""

    def __init__(self, status: int, message: str, *, violation: bool = False, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.violation, self.headers = status, violation, headers or {}
        self.body = {"message": message, "documentation_url": DOCS, "status": str(status), **extra}


@dataclasses.dataclass
class Ctx:
    operation_id: str
    params: dict[str, str]
    query: Any
    body: Any
    request: web.Request
    token: Token | None = None
    user: UserToken | None = None
    repo: Repo | None = None


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def node_id(kind: str, number: int) -> str:
    return f"{kind}_kwDO{base64.b64encode(number.to_bytes(8, 'big')).decode().rstrip('=')}"


def is_sha(ref: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{40}", ref) is not None


def blob_sha(data: bytes) -> str:
    """Git's blob id, as the contents API returns it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def handles(operation_id: str):
    """Mark a method of a resource module as the handler of one operation of the description."""

    def mark(method):
        method.operation_id = operation_id
        return method

    return mark
