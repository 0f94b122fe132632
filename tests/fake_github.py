"""One strict fake of the GitHub REST API for every test: the 22 operations of
../shared/github/openapi/github-subset.json on a real aiohttp server, with in-memory state, GitHub's authentication
(App JWT, installation tokens), pagination, rate-limit headers and failure injection.

Strict: every request and every response is validated against the OpenAPI description with openapi-core; a
request that matches no operation or fails validation is answered as GitHub would (404/422) and recorded as a
violation, and the `fake_github` fixture fails the test at teardown on any violation or unmet expectation."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import math
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.templating.responses.exceptions import ResponseNotFound

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "github" / "openapi" / "github-subset.json"
GITHUB_SERVER = "https://api.github.com"  # the description's server; requests are matched as if sent there
DOCS = "https://docs.github.com/rest"
LEVELS = ("admin", "maintain", "write", "triage", "read", "none")
APP_JWT_OPERATIONS = {"apps/get-authenticated", "apps/create-installation-access-token", "apps/get-repo-installation"}
UNAUTHENTICATED_OPERATIONS = {"apps/create-from-manifest"}
DEFAULT_PERMISSIONS = {
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}
# Permission an installation token needs per operation: (any of these permissions, at least this level).
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "apps/list-repos-accessible-to-installation": (("metadata",), "read"),
    "checks/create": (("checks",), "write"),
    "checks/update": (("checks",), "write"),
    "checks/list-for-ref": (("checks",), "read"),
    "issues/create-comment": (("issues", "pull_requests"), "write"),
    "issues/list-comments": (("issues", "pull_requests"), "read"),
    "issues/update-comment": (("issues", "pull_requests"), "write"),
    "issues/delete-comment": (("issues", "pull_requests"), "write"),
    "reactions/create-for-issue-comment": (("issues", "pull_requests"), "write"),
    "repos/get-collaborator-permission-level": (("metadata",), "read"),
    "pulls/list": (("pull_requests",), "read"),
    "pulls/get": (("pull_requests",), "read"),
    "repos/create-deployment": (("deployments",), "write"),
    "repos/list-deployments": (("deployments",), "read"),
    "repos/create-deployment-status": (("deployments",), "write"),
    "repos/delete-deployment": (("deployments",), "write"),
    "repos/create-commit-status": (("statuses",), "write"),
    "repos/get-combined-status-for-ref": (("statuses",), "read"),
}
_RANK = {"read": 1, "write": 2, "admin": 3}
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)


# --- the OpenAPI description ------------------------------------------------------------------------------------


@functools.cache
def openapi() -> OpenAPI:
    """The description, loaded once per process (about 0.3 s), with GitHub's one nullable-enum quirk patched."""
    spec = json.loads(SPEC_PATH.read_text())
    # Quirk: GitHub marks check-run `conclusion` as `nullable: true` but its `enum` lacks null. openapi-core follows
    # the OAS 3.0.3 clarification (null is valid only if the enum lists it:
    # https://github.com/OAI/OpenAPI-Specification/blob/main/proposals/2019-10-31-Clarify-Nullable.md), so every
    # queued or in-progress check run GitHub really returns ("conclusion": null) would fail response validation.
    conclusion = spec["components"]["schemas"]["check-run"]["properties"]["conclusion"]
    if conclusion.get("nullable") and None not in conclusion["enum"]:
        conclusion["enum"].append(None)
    return OpenAPI.from_dict(spec)


@functools.cache
def _operation_ids() -> frozenset[str]:
    return frozenset(
        op["operationId"]
        for item in json.loads(SPEC_PATH.read_text())["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    )


@functools.cache
def _app_key() -> rsa.RSAPrivateKey:
    """One RSA key per test process: generating a 2048-bit key costs ~50 ms."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _SpecRequest:
    """A request as openapi-core sees it (its `Request` protocol), addressed to GitHub's server."""

    host_url = GITHUB_SERVER

    def __init__(self, request: web.Request, body: bytes | None):
        self.method = request.method.lower()
        self.path = request.path
        self.body = body
        self.content_type = request.headers.get("Content-Type", "").lower()
        self.parameters = RequestParameters(query=request.query, header=request.headers, cookie={})


class _SpecResponse:
    def __init__(self, status: int, data: bytes, headers: CIMultiDict):
        self.status_code = status
        self.data = data
        self.headers = headers
        self.content_type = "application/json" if data else ""


def _explain(error: Exception) -> str:
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        where = str(error).split(":")[0]
        return "; ".join(
            f"{where} at '{'/'.join(map(str, e.absolute_path)) or '(root)'}': {e.message}" for e in schema_errors
        )
    return f"{error} ({cause})" if cause is not None else str(error)


# --- recorded data and state ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    """One request the fake received."""

    operation_id: str | None  # None: matched no operation of the description
    method: str
    path: str
    query: dict[str, str]
    json: Any
    installation_id: int | None = None  # the installation whose token authenticated the call
    token: str | None = None  # that installation token (None for App JWT and unauthenticated calls)
    status: int = 0  # the status the fake answered with
    at: float = dataclasses.field(default_factory=time.time)

    def __str__(self) -> str:
        query = f"?{urlencode(self.query)}" if self.query else ""
        return f"{self.method} {self.path}{query} ({self.operation_id or 'no operation'})"


@dataclasses.dataclass
class Repo:
    full_name: str
    id: int
    private: bool = False
    default_branch: str = "main"
    collaborators: dict[str, str] = dataclasses.field(default_factory=dict)  # login (lower) -> level

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/")[1]

    @property
    def default_sha(self) -> str:
        return hashlib.sha1(f"{self.full_name}@{self.default_branch}".encode()).hexdigest()


@dataclasses.dataclass
class Installation:
    id: int
    account: str
    repositories: list[str]  # full names
    suspended: bool = False
    permissions: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    account_type: str = "Organization"


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
class _Failure:
    operation_id: str | None
    status: int
    times: int
    headers: dict[str, str]
    rate_limit: str | None


@dataclasses.dataclass
class _Comment:
    id: int
    repo: str
    number: int
    body: str
    user: str
    by_app: bool
    author_association: str
    created_at: float
    updated_at: float


class _Reply(Exception):
    """Ends a handler with a GitHub error response; `violation` also records the request as an app bug."""

    def __init__(self, status: int, message: str, *, violation: bool = False, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.violation, self.headers = status, violation, headers or {}
        self.body = {"message": message, "documentation_url": DOCS, "status": str(status), **extra}


@dataclasses.dataclass
class _Ctx:
    operation_id: str
    params: dict[str, str]
    query: Any
    body: Any
    request: web.Request
    token: Token | None = None
    repo: Repo | None = None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _node_id(kind: str, number: int) -> str:
    return f"{kind}_kwDO{base64.b64encode(number.to_bytes(8, 'big')).decode().rstrip('=')}"


def _is_sha(ref: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{40}", ref) is not None


# --- the fake ---------------------------------------------------------------------------------------------------


class FakeGitHub:
    """A running fake of the GitHub REST API; use `async with FakeGitHub() as fake` or the `fake_github` fixture."""

    def __init__(
        self,
        *,
        app_id: int = 424242,
        slug: str = "ghapp-preview",
        name: str = "ghapp preview",
        owner: str = "octo-org",
        token_lifetime: float = 3600.0,
        rate_limit: int = 5000,
    ):
        self.app_id, self.slug, self.name, self.app_owner = app_id, slug, name, owner
        self.client_id = f"Iv23li{secrets.token_hex(7)}"
        self.client_secret = secrets.token_hex(20)
        self.webhook_secret = secrets.token_hex(16)
        self.token_lifetime = token_lifetime
        self.rate_limit = rate_limit
        key = _app_key()
        self.private_key_pem: str = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self._public_key = key.public_key()
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}  # lower-case full name -> Repo
        self.pulls: dict[tuple[str, int], Pull] = {}
        self.tokens: list[Token] = []  # every token issued, in order
        self.violations: list[str] = []
        self._calls: list[Call] = []
        self._expected: dict[str, int | None] = {}
        self._failures: list[_Failure] = []
        self._manifest_codes: set[str] = set()
        self._users: dict[str, int] = {}
        self._ids = itertools.count(1_000_001)
        self._check_runs: dict[int, tuple[str, dict]] = {}  # id -> (repo, record)
        self._suites: dict[tuple[str, str], int] = {}
        self._comments: dict[int, _Comment] = {}
        self._reactions: dict[int, list[dict]] = {}
        self._deployments: dict[int, tuple[str, dict]] = {}
        self._deployment_statuses: dict[int, list[dict]] = {}
        self._statuses: dict[tuple[str, str], list[dict]] = {}
        self._buckets: dict[str, list[float]] = {}  # rate-limit bucket -> [remaining, reset]
        self._down = False
        self._started = time.time()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self._handlers: dict[str, Callable[[_Ctx], tuple[int, Any, dict]]] = {
            "apps/get-authenticated": self._get_app,
            "apps/create-installation-access-token": self._create_token,
            "apps/get-repo-installation": self._get_repo_installation,
            "apps/list-repos-accessible-to-installation": self._list_installation_repos,
            "apps/create-from-manifest": self._convert_manifest,
            "checks/create": self._create_check_run,
            "checks/update": self._update_check_run,
            "checks/list-for-ref": self._list_check_runs,
            "issues/create-comment": self._create_comment,
            "issues/list-comments": self._list_comments,
            "issues/update-comment": self._update_comment,
            "issues/delete-comment": self._delete_comment,
            "reactions/create-for-issue-comment": self._create_reaction,
            "repos/get-collaborator-permission-level": self._get_permission,
            "pulls/list": self._list_pulls,
            "pulls/get": self._get_pull,
            "repos/create-deployment": self._create_deployment,
            "repos/list-deployments": self._list_deployments,
            "repos/create-deployment-status": self._create_deployment_status,
            "repos/delete-deployment": self._delete_deployment,
            "repos/create-commit-status": self._create_status,
            "repos/get-combined-status-for-ref": self._get_combined_status,
        }
        assert set(self._handlers) == _operation_ids(), "every operation of the description needs a handler"

    # lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"

    async def start(self) -> None:
        self._finder = APICallPathFinder(openapi().spec)
        app = web.Application(client_max_size=30 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def _listen(self) -> None:
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def down(self, *, refuse: bool = False) -> None:
        """An outage: every request gets 503, or with `refuse` connections are refused (open ones are closed)."""
        self._down = True
        if refuse and self._site is not None:
            await self._site.stop()
            self._site = None
            for connection in self._runner.server.connections:
                connection.force_close()

    async def up(self) -> None:
        """End an outage started by `down()`."""
        self._down = False
        if self._site is None:
            await self._listen()

    # state set-up

    def add_repo(
        self, full_name: str, id: int | None = None, *, private: bool = False, default_branch: str = "main"
    ) -> Repo:
        repo = Repo(full_name, id if id is not None else next(self._ids), private, default_branch)
        self.repos[full_name.lower()] = repo
        return repo

    def add_installation(
        self,
        id: int,
        account: str,
        repos: Iterable[str] = (),
        *,
        suspended: bool = False,
        permissions: dict[str, str] | None = None,
        account_type: str = "Organization",
    ) -> Installation:
        """An installation of the App on `account` for `repos` ("owner/name", or "name" under `account`)."""
        full_names = [r if "/" in r else f"{account}/{r}" for r in repos]
        for full_name in full_names:
            if full_name.lower() not in self.repos:
                self.add_repo(full_name)
        installation = Installation(
            id,
            account,
            [self.repos[f.lower()].full_name for f in full_names],
            suspended,
            dict(permissions or DEFAULT_PERMISSIONS),
            account_type,
        )
        self.installations[id] = installation
        return installation

    def set_permission(self, repo: str, user: str, level: str) -> None:
        """The user's permission on the repository: admin, maintain, write, triage, read or none."""
        assert level in LEVELS, f"level must be one of {LEVELS}"
        self._repo(repo).collaborators[user.lower()] = level
        self._user_id(user)

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        head_sha: str | None = None,
        head_ref: str | None = None,
        base_ref: str = "main",
        user: str = "octocat",
        fork: bool = False,
        state: str = "open",
        title: str | None = None,
    ) -> Pull:
        """A pull request; `fork` puts its head in `<user>/<name>`. Adds the repository if unknown."""
        if repo.lower() not in self.repos:
            self.add_repo(repo)
        full_name = self.repos[repo.lower()].full_name
        pull = Pull(
            full_name,
            number,
            next(self._ids),
            head_sha or hashlib.sha1(f"{full_name}#{number}".encode()).hexdigest(),
            head_ref or f"feature-{number}",
            base_ref,
            user,
            fork,
            state,
            title or f"Change #{number}",
            self._started - 86400 + number * 60,
        )
        self._user_id(user)
        self.pulls[(full_name.lower(), number)] = pull
        return pull

    def add_comment(
        self, repo: str, number: int, body: str, *, user: str = "octocat", author_association: str = "OWNER"
    ) -> dict:
        """A comment written by a person (not the App) on a pull request added before; returns its JSON."""
        assert (repo.lower(), number) in self.pulls, f"no pull request {repo}#{number}: add_pull() first"
        comment = self._new_comment(self._repo(repo).full_name, number, body, user, False, author_association)
        return self._comment_json(comment)

    def add_manifest_code(self, code: str) -> None:
        """A one-time code for `POST /app-manifests/{code}/conversions`, which returns this App's credentials."""
        self._manifest_codes.add(code)

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expired (the next use gets 401)."""
        for token in self.tokens:
            token.expires_at = min(token.expires_at, time.time() - 1)

    # state readers

    def check_runs(self, repo: str) -> list[dict]:
        """Every check run in the repository, in creation order, with every field the app set."""
        full_name = self._repo(repo).full_name
        return [copy.deepcopy(record) for r, record in self._check_runs.values() if r == full_name]

    def comments(self, repo: str, number: int) -> list[dict]:
        full_name = self._repo(repo).full_name
        return [self._comment_json(c) for c in self._comments.values() if (c.repo, c.number) == (full_name, number)]

    def deployments(self, repo: str) -> list[dict]:
        full_name = self._repo(repo).full_name
        return [copy.deepcopy(d) for r, d in self._deployments.values() if r == full_name]

    def deployment_statuses(self, repo: str, deployment_id: int) -> list[dict]:
        self._deployment(self._repo(repo).full_name, deployment_id)
        return copy.deepcopy(self._deployment_statuses[deployment_id])

    def reactions(self, comment_id: int) -> list[dict]:
        return copy.deepcopy(self._reactions.get(comment_id, []))

    def statuses(self, repo: str, sha: str) -> list[dict]:
        """Commit statuses on `sha`, oldest first."""
        return copy.deepcopy(self._statuses.get((self._repo(repo).full_name, sha), []))

    # recording and assertions

    def calls(self, operation_id: str | None = None) -> list[Call]:
        if operation_id is not None:
            self._check_operation(operation_id)
        return [c for c in self._calls if operation_id is None or c.operation_id == operation_id]

    def operations(self) -> list[str | None]:
        return [c.operation_id for c in self._calls]

    def assert_operations(self, expected: list[str]) -> None:
        """The exact, ordered list of operations received so far."""
        for operation_id in expected:
            self._check_operation(operation_id)
        actual = self.operations()
        assert actual == expected, (
            "GitHub calls differ:\n  expected "
            + repr(expected)
            + "\n  actual   "
            + repr(actual)
            + "\n"
            + "\n".join(f"    {c} -> {c.status}" for c in self._calls)
        )

    def expect(self, operation_id: str, count: int | None = 1) -> None:
        """Declare an expected operation: exactly `count` calls, or with None at least one. Once anything is
        declared, a call to an undeclared operation is a violation; `verify()` checks the counts."""
        self._check_operation(operation_id)
        self._expected[operation_id] = count

    def problems(self) -> list[str]:
        """Violations so far, plus expectations not met."""
        found = list(self.violations)
        for operation_id, count in self._expected.items():
            n = len(self.calls(operation_id))
            if (count is None and n == 0) or (count is not None and n != count):
                wanted = "at least 1" if count is None else str(count)
                found.append(f"expected {wanted} call(s) of {operation_id}, got {n}")
        return found

    def verify(self) -> None:
        """Fail (AssertionError) listing every violation and unmet expectation."""
        if found := self.problems():
            calls = "\n".join(f"  {c} -> {c.status}" for c in self._calls) or "  (none)"
            raise AssertionError(
                "fake GitHub found problems:\n" + "\n".join(f"- {p}" for p in found) + "\ncalls received:\n" + calls
            )

    # failure injection

    def fail(
        self,
        operation_id: str | None,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        rate_limit: Literal["primary", "secondary"] | None = None,
    ) -> None:
        """Answer the next `times` calls of `operation_id` (None: of any operation) with `status`, shaped like
        GitHub: 5xx server errors, 429 with Retry-After, 403 `rate_limit="secondary"` (retry-after, secondary-limit
        message), 403 `rate_limit="primary"` (x-ratelimit-remaining: 0), or a plain 403."""
        if operation_id is not None:
            self._check_operation(operation_id)
        assert rate_limit is None or status in (403, 429), "rate limits are 403 or 429"
        self._failures.append(_Failure(operation_id, status, times, dict(headers or {}), rate_limit))

    def _injected(self, operation_id: str, headers: CIMultiDict) -> _Reply | None:
        failure = next((f for f in self._failures if f.times > 0 and f.operation_id in (None, operation_id)), None)
        if failure is None:
            return None
        failure.times -= 1
        extra = dict(failure.headers)
        if failure.rate_limit == "primary":
            extra.setdefault("x-ratelimit-remaining", "0")
            extra.setdefault("x-ratelimit-reset", str(int(time.time()) + 60))
            message = (
                "API rate limit exceeded for installation. If you reach out to GitHub Support for help, "
                "please include the request ID " + headers["x-github-request-id"] + "."
            )
        elif failure.rate_limit == "secondary" or failure.status == 429:
            extra.setdefault("retry-after", "1")
            message = SECONDARY_RATE_LIMIT.format(request_id=headers["x-github-request-id"])
        elif failure.status == 403:
            message = "Resource not accessible by integration"
        else:
            message = {500: "Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(
                failure.status, "Injected failure"
            )
        return _Reply(failure.status, message, headers=extra)

    # dispatch

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = Call(None, request.method, request.path, dict(request.query), body)
        self._calls.append(call)
        headers = CIMultiDict(
            {
                "x-github-request-id": f"{secrets.token_hex(2).upper()}:{secrets.token_hex(3).upper()}"
                f":{secrets.token_hex(4).upper()}:{secrets.token_hex(4).upper()}"
                f":{int(time.time()):X}",
                "x-github-media-type": "github.v3; format=json",
                "x-github-api-version-selected": "2022-11-28",
            }
        )
        spec_request = _SpecRequest(request, raw or None)
        try:
            found = self._finder.find(spec_request.method, GITHUB_SERVER + request.path)
        except PathError:
            self._violation(call, "no operation of the OpenAPI description matches it")
            return self._respond(call, spec_request, headers, 404, _Reply(404, "Not Found").body)
        call.operation_id = operation_id = found.operation["operationId"]
        problems = self._request_problems(request, spec_request, raw, body)
        for problem in problems:
            self._violation(call, problem)
        if self._expected and operation_id not in self._expected:
            self._violation(call, "unexpected call: the test did not expect this operation")
        ctx = _Ctx(operation_id, found.path_result.variables, request.query, body, request)
        try:
            if self._down:
                raise _Reply(503, "Service Unavailable")
            self._authenticate(ctx, call, headers)
            if (injected := self._injected(operation_id, headers)) is not None:
                raise injected
            if "User-Agent" not in request.headers:
                raise _Reply(
                    403,
                    "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.",
                )
            if isinstance(body, str):
                raise _Reply(400, "Problems parsing JSON")
            if problems:
                raise _Reply(422, "Invalid request.\n\n" + "\n".join(problems))
            status, data, extra = self._handlers[operation_id](ctx)
        except _Reply as reply:
            if reply.violation:
                self._violation(call, f"GitHub refuses it: {reply.body['message']}")
            status, data, extra = reply.status, reply.body, reply.headers
        headers.update(extra)
        return self._respond(call, spec_request, headers, status, data)

    def _respond(
        self, call: Call, spec_request: _SpecRequest, headers: CIMultiDict, status: int, data: Any
    ) -> web.Response:
        call.status = status
        raw = b"" if status == 204 or data is None else json.dumps(data).encode()
        if call.operation_id is not None:
            result = openapi().unmarshal_response(spec_request, _SpecResponse(status, raw, headers))
            for error in result.errors:
                if not isinstance(error, ResponseNotFound):  # GitHub documents few error statuses
                    self._violation(call, f"the fake's own {status} response is invalid: {_explain(error)}")
        response = web.Response(status=status, body=raw or None, headers=headers)
        if raw:
            response.content_type, response.charset = "application/json", "utf-8"
        return response

    def _request_problems(self, request: web.Request, spec_request: _SpecRequest, raw: bytes, body: Any) -> list[str]:
        if "User-Agent" not in request.headers:
            return ["no User-Agent header (GitHub answers 403)"]
        if isinstance(body, str):
            return ["the body is not JSON"]
        if raw and not spec_request.content_type.startswith("application/json"):
            return [f"a JSON body sent as {spec_request.content_type or 'no content type'}"]
        return [_explain(e) for e in openapi().unmarshal_request(spec_request).errors]

    def _violation(self, call: Call, problem: str) -> None:
        self.violations.append(f"{call}: {problem}")

    def _check_operation(self, operation_id: str) -> None:
        if operation_id not in _operation_ids():
            raise ValueError(f"{operation_id!r} is not an operation of {SPEC_PATH.name}")

    # authentication

    def _authenticate(self, ctx: _Ctx, call: Call, headers: CIMultiDict) -> None:
        if ctx.operation_id in UNAUTHENTICATED_OPERATIONS:
            return
        scheme, _, credential = ctx.request.headers.get("Authorization", "").partition(" ")
        scheme, credential = scheme.lower(), credential.strip()
        if ctx.operation_id in APP_JWT_OPERATIONS:
            if scheme != "bearer" or not credential:
                raise _Reply(401, "A JSON web token could not be decoded")
            self._verify_jwt(credential)
            self._count_request(f"app:{self.app_id}", headers)
        else:
            token = next((t for t in self.tokens if t.token == credential), None)
            if scheme not in ("token", "bearer") or token is None or token.expires_at <= time.time():
                raise _Reply(401, "Bad credentials")
            installation = self.installations[token.installation_id]
            call.installation_id, call.token = installation.id, token.token
            ctx.token = token
            self._count_request(f"installation:{installation.id}", headers)
            if installation.suspended:
                raise _Reply(403, "This installation has been suspended")
            kinds, level = NEEDS[ctx.operation_id]
            if not any(_RANK.get(token.permissions.get(k, ""), 0) >= _RANK[level] for k in kinds):
                raise _Reply(403, "Resource not accessible by integration")
        if "owner" in ctx.params:
            repo = self.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}".lower())
            if repo is None:
                raise _Reply(404, "Not Found")
            ctx.repo = repo
            if ctx.token is not None:
                if repo.full_name not in self.installations[ctx.token.installation_id].repositories:
                    raise _Reply(404, "Not Found")
                if ctx.token.repositories is not None and repo.full_name not in ctx.token.repositories:
                    raise _Reply(403, "Resource not accessible by integration")

    def _verify_jwt(self, credential: str) -> None:
        try:
            claims = jwt.decode(
                credential,
                self._public_key,
                algorithms=["RS256"],
                leeway=60,
                options={"require": ["exp", "iat", "iss"], "verify_iss": False},
            )
        except jwt.InvalidTokenError as error:
            raise _Reply(401, f"A JSON web token could not be decoded ({error})") from None
        if not isinstance(claims["iss"], str) or claims["iss"] not in (str(self.app_id), self.client_id):
            raise _Reply(401, f"'Issuer' claim ('iss') must be the App's id, got {claims['iss']!r}")
        if claims["exp"] > time.time() + 600 + 60:
            raise _Reply(401, "'Expiration time' claim ('exp') is too far in the future")

    def _count_request(self, bucket: str, headers: CIMultiDict) -> None:
        now = time.time()
        state = self._buckets.setdefault(bucket, [self.rate_limit, now + 3600])
        if state[1] <= now:
            state[:] = [self.rate_limit, now + 3600]
        exhausted = state[0] == 0
        state[0] = max(0, state[0] - 1)
        remaining = int(state[0])
        headers.update(
            {
                "x-ratelimit-limit": str(self.rate_limit),
                "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(int(state[1])),
                "x-ratelimit-used": str(self.rate_limit - remaining),
                "x-ratelimit-resource": "core",
            }
        )
        if exhausted:
            raise _Reply(
                403,
                "API rate limit exceeded for installation. If you reach out to GitHub Support for "
                "help, please include the request ID " + headers["x-github-request-id"] + ".",
            )

    # handlers: apps

    def _get_app(self, ctx: _Ctx):
        return 200, self._app_json() | {"installations_count": len(self.installations)}, {}

    def _create_token(self, ctx: _Ctx):
        installation = self.installations.get(int(ctx.params["installation_id"]))
        if installation is None:
            raise _Reply(404, "Not Found")
        if installation.suspended:
            raise _Reply(403, "This installation has been suspended")
        body = ctx.body or {}
        repositories = None
        if "repositories" in body or "repository_ids" in body:
            own = {self.repos[f.lower()].name: f for f in installation.repositories}
            by_id = {self.repos[f.lower()].id: f for f in installation.repositories}
            names, ids = body.get("repositories", []), body.get("repository_ids", [])
            if any(n.split("/")[-1] not in own for n in names) or any(i not in by_id for i in ids):
                raise _Reply(
                    422,
                    "There is at least one repository that does not exist or is not accessible to "
                    "the parent installation.",
                )
            repositories = {own[n.split("/")[-1]] for n in names} | {by_id[i] for i in ids}
        permissions = dict(installation.permissions)
        if "permissions" in body:
            granted = installation.permissions
            if any(_RANK[v] > _RANK.get(granted.get(k, ""), 0) for k, v in body["permissions"].items()):
                raise _Reply(422, "The permissions requested are not granted to this installation.")
            permissions = {"metadata": "read", **body["permissions"]}
        token = Token(
            "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)),
            installation.id,
            time.time() + self.token_lifetime,
            repositories,
            permissions,
        )
        self.tokens.append(token)
        data = {
            "token": token.token,
            "expires_at": _iso(token.expires_at),
            "permissions": permissions,
            "repository_selection": "selected",
        }
        if repositories is not None:
            data["repositories"] = [self._repo_json(self.repos[f.lower()]) for f in sorted(repositories)]
        return 201, data, {}

    def _get_repo_installation(self, ctx: _Ctx):
        installation = next((i for i in self.installations.values() if ctx.repo.full_name in i.repositories), None)
        if installation is None:
            raise _Reply(404, "Not Found")
        return 200, self._installation_json(installation), {}

    def _list_installation_repos(self, ctx: _Ctx):
        names = self.installations[ctx.token.installation_id].repositories
        repos = [self.repos[f.lower()] for f in names if ctx.token.repositories is None or f in ctx.token.repositories]
        page, links = self._paginate(ctx, sorted(repos, key=lambda r: r.full_name.lower()))
        return (
            200,
            {
                "total_count": len(repos),
                "repository_selection": "selected",
                "repositories": [self._repo_json(r) for r in page],
            },
            links,
        )

    def _convert_manifest(self, ctx: _Ctx):
        code = ctx.params["code"]
        if code not in self._manifest_codes:
            raise _Reply(404, "Not Found")
        self._manifest_codes.discard(code)
        return (
            201,
            self._app_json()
            | {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "webhook_secret": self.webhook_secret,
                "pem": self.private_key_pem,
            },
            {},
        )

    # handlers: checks

    def _create_check_run(self, ctx: _Ctx):
        body = ctx.body
        if not _is_sha(body["head_sha"]):
            raise _Reply(422, f"No commit found for SHA: {body['head_sha']}", violation=True)
        record = {
            "id": next(self._ids),
            "name": body["name"],
            "head_sha": body["head_sha"],
            "status": "queued",
            "conclusion": None,
            "details_url": None,
            "external_id": None,
            "output": {"title": None, "summary": None, "text": None, "annotations": [], "images": []},
            "actions": [],
            "started_at": _iso(time.time()),
            "completed_at": None,
        }
        self._apply_check_run(record, body)
        self._check_runs[record["id"]] = (ctx.repo.full_name, record)
        return 201, self._check_run_json(ctx.repo, record), {}

    def _update_check_run(self, ctx: _Ctx):
        entry = self._check_runs.get(int(ctx.params["check_run_id"]))
        if entry is None or entry[0] != ctx.repo.full_name:
            raise _Reply(404, "Not Found")
        self._apply_check_run(entry[1], ctx.body)
        return 200, self._check_run_json(ctx.repo, entry[1]), {}

    def _apply_check_run(self, record: dict, body: dict) -> None:
        conclusion = body.get("conclusion", record["conclusion"])
        completing = "conclusion" in body or "completed_at" in body or body.get("status") == "completed"
        if completing and conclusion is None:
            raise _Reply(
                422,
                'Invalid request.\n\n"conclusion" is required when "status" is "completed" or "completed_at" is given.',
                violation=True,
            )
        for key in ("name", "details_url", "external_id", "status", "started_at", "completed_at", "conclusion"):
            if key in body:
                record[key] = body[key]
        if "actions" in body:
            record["actions"] = body["actions"]
        if "output" in body:
            output = body["output"]
            record["output"].update({k: output.get(k) for k in ("title", "summary", "text")})
            record["output"]["annotations"] += output.get("annotations", [])
            record["output"]["images"] = output.get("images", record["output"]["images"])
        if record["conclusion"] is not None:
            record["status"] = "completed"
        if record["status"] == "completed":
            record["completed_at"] = record["completed_at"] or _iso(time.time())

    def _list_check_runs(self, ctx: _Ctx):
        sha = self._resolve(ctx.repo, ctx.params["ref"])
        if sha is None:
            raise _Reply(422, f"No commit found for SHA: {ctx.params['ref']}")
        runs = [r for repo, r in self._check_runs.values() if repo == ctx.repo.full_name and r["head_sha"] == sha]
        query = ctx.query
        if "check_name" in query:
            runs = [r for r in runs if r["name"] == query["check_name"]]
        if "status" in query:
            runs = [r for r in runs if r["status"] == query["status"]]
        if "app_id" in query and int(query["app_id"]) != self.app_id:
            runs = []
        if query.get("filter", "latest") == "latest":
            latest = {r["name"]: r for r in runs}
            runs = list(latest.values())
        runs.sort(key=lambda r: -r["id"])
        page, links = self._paginate(ctx, runs)
        return 200, {"total_count": len(runs), "check_runs": [self._check_run_json(ctx.repo, r) for r in page]}, links

    # handlers: issue comments and reactions

    def _create_comment(self, ctx: _Ctx):
        number = int(ctx.params["issue_number"])
        self._pull(ctx.repo.full_name, number)
        self._check_length(ctx.body["body"], 65536, "IssueComment", "body")
        comment = self._new_comment(ctx.repo.full_name, number, ctx.body["body"], self.bot_login, True, "NONE")
        data = self._comment_json(comment)
        return 201, data, {"Location": data["url"]}

    def _list_comments(self, ctx: _Ctx):
        number = int(ctx.params["issue_number"])
        self._pull(ctx.repo.full_name, number)
        found = [c for c in self._comments.values() if (c.repo, c.number) == (ctx.repo.full_name, number)]
        if "since" in ctx.query:
            since = _parse_iso(ctx.query["since"])
            found = [c for c in found if c.updated_at >= since]
        page, links = self._paginate(ctx, found)
        return 200, [self._comment_json(c) for c in page], links

    def _update_comment(self, ctx: _Ctx):
        comment = self._comment(ctx)
        self._check_length(ctx.body["body"], 65536, "IssueComment", "body")
        comment.body, comment.updated_at = ctx.body["body"], time.time()
        return 200, self._comment_json(comment), {}

    def _delete_comment(self, ctx: _Ctx):
        comment = self._comment(ctx)
        del self._comments[comment.id]
        self._reactions.pop(comment.id, None)
        return 204, None, {}

    def _create_reaction(self, ctx: _Ctx):
        comment = self._comment(ctx)
        reactions = self._reactions.setdefault(comment.id, [])
        existing = next(
            (r for r in reactions if r["user"]["login"] == self.bot_login and r["content"] == ctx.body["content"]), None
        )
        if existing is not None:
            return 200, existing, {}
        reaction = {
            "id": next(self._ids),
            "node_id": _node_id("REA", len(reactions) + comment.id),
            "user": self._user_json(self.bot_login),
            "content": ctx.body["content"],
            "created_at": _iso(time.time()),
        }
        reactions.append(reaction)
        return 201, reaction, {}

    def _comment(self, ctx: _Ctx) -> _Comment:
        comment = self._comments.get(int(ctx.params["comment_id"]))
        if comment is None or comment.repo != ctx.repo.full_name:
            raise _Reply(404, "Not Found")
        return comment

    def _new_comment(self, repo: str, number: int, body: str, user: str, by_app: bool, association: str) -> _Comment:
        now = time.time()
        comment = _Comment(next(self._ids), repo, number, body, user, by_app, association, now, now)
        self._comments[comment.id] = comment
        return comment

    # handlers: collaborators and pull requests

    def _get_permission(self, ctx: _Ctx):
        user = ctx.params["username"]
        level = ctx.repo.collaborators.get(user.lower(), "none" if ctx.repo.private else "read")
        permission = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read"}.get(level, level)
        rank = LEVELS.index(level)
        flags = {
            name: rank <= LEVELS.index(needed)
            for name, needed in (
                ("admin", "admin"),
                ("maintain", "maintain"),
                ("push", "write"),
                ("triage", "triage"),
                ("pull", "read"),
            )
        }
        user_json = self._user_json(user) | {"permissions": flags, "role_name": level}
        return 200, {"permission": permission, "role_name": level, "user": user_json}, {}

    def _list_pulls(self, ctx: _Ctx):
        query = ctx.query
        state = query.get("state", "open")
        pulls = [p for p in self.pulls.values() if p.repo == ctx.repo.full_name and state in ("all", p.state)]
        if "head" in query:
            owner, _, ref = query["head"].partition(":")
            pulls = [p for p in pulls if p.head_ref == ref and p.head_repo.split("/")[0].lower() == owner.lower()]
        if "base" in query:
            pulls = [p for p in pulls if p.base_ref == query["base"]]
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        pulls.sort(key=lambda p: (p.created_at, p.number), reverse=direction == "desc")
        page, links = self._paginate(ctx, pulls)
        return 200, [self._pull_json(p) for p in page], links

    def _get_pull(self, ctx: _Ctx):
        pull = self._pull(ctx.repo.full_name, int(ctx.params["pull_number"]))
        comments = sum(1 for c in self._comments.values() if (c.repo, c.number) == (pull.repo, pull.number))
        return (
            200,
            self._pull_json(pull)
            | {
                "merged": pull.merged,
                "mergeable": True,
                "rebaseable": True,
                "mergeable_state": "clean",
                "merged_by": None,
                "comments": comments,
                "review_comments": 0,
                "maintainer_can_modify": pull.fork,
                "commits": 1,
                "additions": 1,
                "deletions": 0,
                "changed_files": 1,
            },
            {},
        )

    def _pull(self, repo: str, number: int) -> Pull:
        pull = self.pulls.get((repo.lower(), number))
        if pull is None:
            raise _Reply(404, "Not Found")
        return pull

    # handlers: deployments and statuses

    def _create_deployment(self, ctx: _Ctx):
        body, repo = ctx.body, ctx.repo
        sha = self._resolve(repo, body["ref"])
        if sha is None:
            raise _Reply(422, f"No ref found for: {body['ref']}")
        self._check_contexts(repo, sha, body["ref"], body.get("required_contexts"))
        environment = body.get("environment", "production")
        now, deployment_id = _iso(time.time()), next(self._ids)
        url = f"{self.base_url}/repos/{repo.full_name}/deployments/{deployment_id}"
        deployment = {
            "url": url,
            "id": deployment_id,
            "node_id": _node_id("DE", deployment_id),
            "sha": sha,
            "ref": body["ref"],
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "original_environment": environment,
            "environment": environment,
            "description": body.get("description") or "",
            "creator": self._user_json(self.bot_login),
            "created_at": now,
            "updated_at": now,
            "statuses_url": f"{url}/statuses",
            "repository_url": f"{self.base_url}/repos/{repo.full_name}",
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get("production_environment", environment == "production"),
            "performed_via_github_app": self._app_json(),
        }
        self._deployments[deployment_id] = (repo.full_name, deployment)
        self._deployment_statuses[deployment_id] = []
        return 201, deployment, {}

    def _check_contexts(self, repo: Repo, sha: str, ref: str, required: list[str] | None) -> None:
        """GitHub refuses a deployment (409) unless the commit's status contexts (commit statuses and check runs)
        are successful: all of them by default, or only those in `required_contexts`."""
        states: dict[str, str] = {}
        for status in self._statuses.get((repo.full_name, sha), []):
            states[status["context"]] = status["state"]
        for r, run in self._check_runs.values():
            if r == repo.full_name and run["head_sha"] == sha:
                ok = run["status"] == "completed" and run["conclusion"] in ("success", "neutral", "skipped")
                states[run["name"]] = "success" if ok else (run["conclusion"] or "pending")
        contexts = states if required is None else {c: states.get(c, "missing") for c in required}
        failed = [{"context": c, "state": s} for c, s in contexts.items() if s != "success"]
        if failed:
            raise _Reply(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                errors=[
                    {"contexts": failed, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}
                ],
            )

    def _list_deployments(self, ctx: _Ctx):
        found = [d for r, d in self._deployments.values() if r == ctx.repo.full_name]
        for key in ("sha", "ref", "task", "environment"):
            if key in ctx.query:
                found = [d for d in found if d[key] == ctx.query[key]]
        page, links = self._paginate(ctx, found[::-1])
        return 200, page, links

    def _create_deployment_status(self, ctx: _Ctx):
        deployment = self._deployment(ctx.repo.full_name, int(ctx.params["deployment_id"]))
        body = ctx.body
        self._check_length(body.get("description", ""), 140, "DeploymentStatus", "description")
        statuses = self._deployment_statuses[deployment["id"]]
        environment = body.get("environment") or (
            statuses[-1]["environment"] if statuses else deployment["environment"]
        )
        log_url = body.get("log_url") or body.get("target_url", "")
        status = self._new_deployment_status(
            deployment,
            body["state"],
            body.get("description", ""),
            environment,
            log_url,
            body.get("environment_url", ""),
        )
        if body["state"] == "success" and body.get("auto_inactive", True):
            for r, other in self._deployments.values():
                previous = self._deployment_statuses[other["id"]]
                if (
                    r == ctx.repo.full_name
                    and other is not deployment
                    and other["environment"] == environment
                    and not other["transient_environment"]
                    and not other["production_environment"]
                    and previous
                    and previous[-1]["state"] == "success"
                ):
                    self._new_deployment_status(other, "inactive", "", environment, "", "")
        return 201, status, {"Location": status["url"]}

    def _new_deployment_status(
        self, deployment: dict, state: str, description: str, environment: str, log_url: str, environment_url: str
    ) -> dict:
        status_id, now = next(self._ids), _iso(time.time())
        status = {
            "url": f"{deployment['url']}/statuses/{status_id}",
            "id": status_id,
            "node_id": _node_id("DES", status_id),
            "state": state,
            "creator": self._user_json(self.bot_login),
            "description": description,
            "environment": environment,
            "target_url": log_url,
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment["url"],
            "repository_url": deployment["repository_url"],
            "environment_url": environment_url,
            "log_url": log_url,
            "performed_via_github_app": self._app_json(),
        }
        self._deployment_statuses[deployment["id"]].append(status)
        deployment["updated_at"] = now
        return status

    def _delete_deployment(self, ctx: _Ctx):
        deployment = self._deployment(ctx.repo.full_name, int(ctx.params["deployment_id"]))
        statuses = self._deployment_statuses[deployment["id"]]
        # GitHub: "If the repository only has one deployment, you can delete the deployment regardless of its
        # status. If the repository has more than one deployment, you can only delete inactive deployments."
        alone = sum(1 for r, _ in self._deployments.values() if r == ctx.repo.full_name) == 1
        if not alone and (not statuses or statuses[-1]["state"] != "inactive"):
            raise _Reply(
                422, "We cannot delete an active deployment unless it is the only deployment in a given environment."
            )
        del self._deployments[deployment["id"]]
        del self._deployment_statuses[deployment["id"]]
        return 204, None, {}

    def _deployment(self, repo: str, deployment_id: int) -> dict:
        entry = self._deployments.get(deployment_id)
        if entry is None or entry[0] != repo:
            raise _Reply(404, "Not Found")
        return entry[1]

    def _create_status(self, ctx: _Ctx):
        sha, body = ctx.params["sha"], ctx.body
        if not _is_sha(sha):
            raise _Reply(422, f"No commit found for SHA: {sha}", violation=True)
        status_id, now = next(self._ids), _iso(time.time())
        bot = self._user_json(self.bot_login)
        status = {
            "url": f"{self.base_url}/repos/{ctx.repo.full_name}/statuses/{sha}",
            "avatar_url": bot["avatar_url"],
            "id": status_id,
            "node_id": _node_id("SC", status_id),
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": now,
            "updated_at": now,
            "creator": bot,
        }
        self._statuses.setdefault((ctx.repo.full_name, sha), []).append(status)
        return 201, status, {"Location": status["url"]}

    def _get_combined_status(self, ctx: _Ctx):
        sha = self._resolve(ctx.repo, ctx.params["ref"])
        if sha is None:
            raise _Reply(404, "No commit found for SHA: " + ctx.params["ref"])
        latest: dict[str, dict] = {}
        for status in self._statuses.get((ctx.repo.full_name, sha), []):
            latest[status["context"].lower()] = status
        states = {s["state"] for s in latest.values()}
        state = (
            "failure"
            if states & {"error", "failure"}
            else "pending"
            if not states or "pending" in states
            else "success"
        )
        page, links = self._paginate(ctx, list(latest.values()))
        statuses = [{k: v for k, v in s.items() if k != "creator"} | {"required": False} for s in page]
        repo_url = f"{self.base_url}/repos/{ctx.repo.full_name}"
        return (
            200,
            {
                "state": state,
                "statuses": statuses,
                "sha": sha,
                "total_count": len(latest),
                "repository": self._repo_json(ctx.repo),
                "commit_url": f"{repo_url}/commits/{sha}",
                "url": f"{repo_url}/commits/{sha}/status",
            },
            links,
        )

    # helpers

    def _repo(self, name: str) -> Repo:
        try:
            return self.repos[name.lower()]
        except KeyError:
            raise KeyError(f"no repository {name!r}: add it with add_repo() or add_installation()") from None

    def _resolve(self, repo: Repo, ref: str) -> str | None:
        """The commit SHA a ref names: a SHA, the default branch, or the head branch of one of its pull requests."""
        ref = ref.removeprefix("refs/heads/").removeprefix("heads/")
        if _is_sha(ref):
            return ref
        if ref == repo.default_branch:
            return repo.default_sha
        heads = [p for p in self.pulls.values() if p.repo == repo.full_name and not p.fork and p.head_ref == ref]
        return heads[-1].head_sha if heads else None

    def _check_length(self, text: str, limit: int, resource: str, field: str) -> None:
        if len(text) > limit:
            raise _Reply(
                422,
                "Validation Failed",
                violation=True,
                errors=[
                    {
                        "resource": resource,
                        "code": "custom",
                        "field": field,
                        "message": f"{field} is too long (maximum is {limit} characters)",
                    }
                ],
            )

    def _paginate(self, ctx: _Ctx, items: list) -> tuple[list, dict[str, str]]:
        """One page of `items` and GitHub's Link header for `per_page`/`page`."""
        per_page = max(1, min(100, int(ctx.query.get("per_page", 30))))
        page = max(1, int(ctx.query.get("page", 1)))
        last = max(1, math.ceil(len(items) / per_page))

        def url(number: int) -> str:
            query = dict(ctx.query) | {"per_page": str(per_page), "page": str(number)}
            return f"<{self.base_url}{ctx.request.path}?{urlencode(query)}>"

        links = []
        if page > 1:
            links.append(f'{url(min(page - 1, last))}; rel="prev"')
        if page < last:
            links += [f'{url(page + 1)}; rel="next"', f'{url(last)}; rel="last"']
        if page > 1:
            links.append(f'{url(1)}; rel="first"')
        return items[(page - 1) * per_page : page * per_page], ({"Link": ", ".join(links)} if links else {})

    def _user_id(self, login: str) -> int:
        return self._users.setdefault(login.lower(), 9_000_000 + len(self._users) * 7 + 1)

    # JSON as GitHub shapes it

    def _user_json(self, login: str, kind: str | None = None) -> dict:
        uid = self._user_id(login)
        kind = kind or ("Bot" if login.endswith("[bot]") else "User")
        api = f"{self.base_url}/users/{quote(login)}"
        return {
            "login": login,
            "id": uid,
            "node_id": _node_id("U", uid),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"https://github.com/{quote(login)}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _app_json(self) -> dict:
        created = _iso(self._started - 30 * 86400)
        return {
            "id": self.app_id,
            "slug": self.slug,
            "node_id": _node_id("A", self.app_id),
            "client_id": self.client_id,
            "owner": self._user_json(self.app_owner, "Organization"),
            "name": self.name,
            "description": "A preview environment for every pull request",
            "external_url": f"https://{self.slug}.example.com",
            "html_url": f"https://github.com/apps/{self.slug}",
            "created_at": created,
            "updated_at": created,
            "permissions": dict(DEFAULT_PERMISSIONS),
            "events": ["check_run", "issue_comment", "pull_request", "push"],
        }

    def _installation_json(self, installation: Installation) -> dict:
        created = _iso(self._started - 7 * 86400)
        base = self.base_url
        account = installation.account
        return {
            "id": installation.id,
            "account": self._user_json(account, installation.account_type),
            "repository_selection": "selected",
            "access_tokens_url": f"{base}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{base}/installation/repositories",
            "html_url": f"https://github.com/organizations/{account}/settings/installations/{installation.id}",
            "app_id": self.app_id,
            "app_slug": self.slug,
            "client_id": self.client_id,
            "target_id": self._user_id(account),
            "target_type": installation.account_type,
            "permissions": dict(installation.permissions),
            "events": ["check_run", "issue_comment", "pull_request", "push"],
            "created_at": created,
            "updated_at": created,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": self._user_json(account) if installation.suspended else None,
            "suspended_at": created if installation.suspended else None,
        }

    def _repo_json(self, repo: Repo, *, fork: bool = False) -> dict:
        api, html = f"{self.base_url}/repos/{repo.full_name}", f"https://github.com/{repo.full_name}"
        owner_type = next(
            (i.account_type for i in self.installations.values() if i.account.lower() == repo.owner.lower()), "User"
        )
        created = _iso(self._started - 365 * 86400)
        templates = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        return {
            "id": repo.id,
            "node_id": _node_id("R", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user_json(repo.owner, owner_type),
            "private": repo.private,
            "html_url": html,
            "description": None,
            "fork": fork,
            "url": api,
            **{k: api + v for k, v in templates.items()},
            "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "HCL",
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": 108,
            "default_branch": repo.default_branch,
            "open_issues_count": 0,
            "open_issues": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": created,
            "created_at": created,
            "updated_at": created,
            "license": None,
            "allow_forking": True,
            "web_commit_signoff_required": False,
        }

    def _pull_json(self, pull: Pull) -> dict:
        repo = self.repos[pull.repo.lower()]
        api, html = f"{self.base_url}/repos/{repo.full_name}", f"https://github.com/{repo.full_name}"
        url = f"{api}/pulls/{pull.number}"
        head_repo = Repo(pull.head_repo, repo.id + 1_000_000) if pull.fork else repo
        closed = _iso(pull.created_at + 3600) if pull.state == "closed" else None
        links = {
            "self": url,
            "html": f"{html}/pull/{pull.number}",
            "issue": f"{api}/issues/{pull.number}",
            "comments": f"{api}/issues/{pull.number}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{api}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": f"{api}/statuses/{pull.head_sha}",
        }
        level = repo.collaborators.get(pull.user.lower())
        association = (
            "OWNER"
            if pull.user.lower() == repo.owner.lower()
            else "COLLABORATOR"
            if level in ("admin", "maintain", "write", "triage")
            else "CONTRIBUTOR"
        )
        return {
            "url": url,
            "id": pull.id,
            "node_id": _node_id("PR", pull.id),
            "html_url": links["html"],
            "diff_url": f"{links['html']}.diff",
            "patch_url": f"{links['html']}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self._user_json(pull.user),
            "body": None,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": _iso(pull.created_at),
            "updated_at": _iso(pull.created_at),
            "closed_at": closed,
            "merged_at": closed if pull.merged else None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{head_repo.owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user_json(head_repo.owner),
                "repo": self._repo_json(head_repo, fork=pull.fork),
            },
            "base": {
                "label": f"{repo.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": repo.default_sha,
                "user": self._user_json(repo.owner),
                "repo": self._repo_json(repo),
            },
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": association,
            "auto_merge": None,
            "draft": False,
        }

    def _check_run_json(self, repo: Repo, record: dict) -> dict:
        api = f"{self.base_url}/repos/{repo.full_name}"
        suite = self._suites.setdefault((repo.full_name, record["head_sha"]), next(self._ids))
        output = record["output"]
        pulls = [
            p
            for p in self.pulls.values()  # GitHub lists only same-repository pull requests here
            if p.repo == repo.full_name and p.head_sha == record["head_sha"] and not p.fork and p.state == "open"
        ]
        mini_repo = {"id": repo.id, "url": api, "name": repo.name}
        return {
            "id": record["id"],
            "head_sha": record["head_sha"],
            "node_id": _node_id("CR", record["id"]),
            "external_id": record["external_id"] or "",
            "url": f"{api}/check-runs/{record['id']}",
            "html_url": f"https://github.com/{repo.full_name}/runs/{record['id']}",
            "details_url": record["details_url"] or self._app_json()["external_url"],
            "status": record["status"],
            "conclusion": record["conclusion"],
            "started_at": record["started_at"],
            "completed_at": record["completed_at"],
            "output": {
                "title": output["title"],
                "summary": output["summary"],
                "text": output["text"],
                "annotations_count": len(output["annotations"]),
                "annotations_url": f"{api}/check-runs/{record['id']}/annotations",
            },
            "name": record["name"],
            "check_suite": {"id": suite},
            "app": self._app_json(),
            "pull_requests": [
                {
                    "id": p.id,
                    "number": p.number,
                    "url": f"{api}/pulls/{p.number}",
                    "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": mini_repo},
                    "base": {"ref": p.base_ref, "sha": repo.default_sha, "repo": mini_repo},
                }
                for p in pulls
            ],
        }

    def _comment_json(self, comment: _Comment) -> dict:
        api = f"{self.base_url}/repos/{comment.repo}"
        counts = dict.fromkeys(("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"), 0)
        for reaction in self._reactions.get(comment.id, []):
            counts[reaction["content"]] += 1
        return {
            "id": comment.id,
            "node_id": _node_id("IC", comment.id),
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{comment.repo}/pull/{comment.number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "issue_url": f"{api}/issues/{comment.number}",
            "author_association": comment.author_association,
            "performed_via_github_app": self._app_json() if comment.by_app else None,
            "reactions": {
                "url": f"{api}/issues/comments/{comment.id}/reactions",
                "total_count": sum(counts.values()),
                **counts,
            },
        }


@pytest.fixture
async def fake_github():
    """A running FakeGitHub; the test fails at teardown on any violation or unmet expectation."""
    async with FakeGitHub() as fake:
        yield fake
        fake.verify()
