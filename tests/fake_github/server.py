"""The fake's server: one aiohttp app that finds each request's operation, authenticates it (App JWT,
installation token, user token), validates request and response against the description, answers ETags and
rate limits as GitHub does, and records every call for the test's expectations. Handlers live in one module per
resource group; `FakeGitHub` composes them."""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import itertools
import json
import math
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound

from tests.fake_github import spec
from tests.fake_github.apps import AppsMixin
from tests.fake_github.checks import ChecksMixin
from tests.fake_github.deployments import DeploymentsMixin
from tests.fake_github.issues import IssuesMixin
from tests.fake_github.pulls import PullsMixin
from tests.fake_github.repos import ARCHIVE_PREFIX, ReposMixin
from tests.fake_github.state import (
    RANK,
    Call,
    Comment,
    Ctx,
    Failure,
    Installation,
    Pull,
    Reply,
    Repo,
    Token,
    User,
    UserToken,
    handles,
)
from tests.fake_github.users import UsersMixin

APP_JWT_OPERATIONS = {"apps/get-authenticated", "apps/create-installation-access-token", "apps/get-repo-installation"}
UNAUTHENTICATED_OPERATIONS = {"apps/create-from-manifest"}
USER_OPERATIONS = {  # only a user-to-server token (`ghu_`) can call these
    "users/get-authenticated",
    "apps/list-installations-for-authenticated-user",
    "apps/list-installation-repos-for-authenticated-user",
}
ANY_TOKEN_OPERATIONS = {"repos/get", "rate-limit/get"}  # an installation token or a user token
WEB_OPERATIONS = {"web/oauth-authorize", "web/oauth-access-token"}  # github.com pages, not the REST API
# Permission an installation token needs per operation: (any of these permissions, at least this level).
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "apps/list-repos-accessible-to-installation": (("metadata",), "read"),
    "checks/create": (("checks",), "write"),
    "checks/update": (("checks",), "write"),
    "checks/list-for-ref": (("checks",), "read"),
    "checks/list-suites-for-ref": (("checks",), "read"),
    "issues/create-comment": (("issues", "pull_requests"), "write"),
    "issues/list-comments": (("issues", "pull_requests"), "read"),
    "issues/get-comment": (("issues", "pull_requests"), "read"),
    "issues/update-comment": (("issues", "pull_requests"), "write"),
    "issues/delete-comment": (("issues", "pull_requests"), "write"),
    "issues/list-labels-on-issue": (("issues", "pull_requests"), "read"),
    "reactions/create-for-issue-comment": (("issues", "pull_requests"), "write"),
    "repos/get-collaborator-permission-level": (("metadata",), "read"),
    "pulls/list": (("pull_requests",), "read"),
    "pulls/get": (("pull_requests",), "read"),
    "pulls/list-files": (("pull_requests", "contents"), "read"),
    "pulls/list-commits": (("pull_requests", "contents"), "read"),
    "repos/create-deployment": (("deployments",), "write"),
    "repos/list-deployments": (("deployments",), "read"),
    "repos/create-deployment-status": (("deployments",), "write"),
    "repos/delete-deployment": (("deployments",), "write"),
    "repos/create-commit-status": (("statuses",), "write"),
    "repos/get-combined-status-for-ref": (("statuses",), "read"),
    "repos/get-content": (("contents",), "read"),
    "repos/download-tarball-archive": (("contents",), "read"),
    "repos/get-commit": (("contents",), "read"),
    "repos/compare-commits-with-basehead": (("contents",), "read"),
    "repos/get": (("metadata",), "read"),
    "rate-limit/get": ((), "read"),
}
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)


@functools.cache
def _app_key() -> rsa.RSAPrivateKey:
    """One RSA key per test process: generating a 2048-bit key costs ~50 ms."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeGitHub(AppsMixin, ChecksMixin, IssuesMixin, PullsMixin, DeploymentsMixin, ReposMixin, UsersMixin):
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
        self.tokens: list[Token] = []  # every installation token issued, in order
        self.users: dict[str, User] = {}  # lower-case login -> a person who can sign in
        self.user_tokens: list[UserToken] = []  # every `ghu_` token issued, in order
        self.browser_user: str | None = None  # who the OAuth authorize page sees as signed in (sign_in_as)
        self.archive_downloads = 0  # tarballs fetched from the archive URL a tarball request redirected to
        self.violations: list[str] = []
        self._calls: list[Call] = []
        self._expected: dict[str, int | None] = {}
        self._failures: list[Failure] = []
        self._manifest_codes: set[str] = set()
        self._oauth_codes: dict[str, tuple[str, str, float]] = {}  # code -> (login, redirect_uri, expires)
        self._archives: dict[str, tuple[str, str, float]] = {}  # token -> (repo, sha, expires)
        self._users: dict[str, int] = {}
        self._ids = itertools.count(1_000_001)
        self._check_runs: dict[int, tuple[str, dict]] = {}  # id -> (repo, record)
        self._foreign_runs: dict[int, str] = {}  # check run id -> slug of the other App that made it
        self._suites: dict[tuple[str, str, int], int] = {}  # (repo, sha, app id) -> suite id
        self._comments: dict[int, Comment] = {}
        self._reactions: dict[int, list[dict]] = {}
        self._deployments: dict[int, tuple[str, dict]] = {}
        self._deployment_statuses: dict[int, list[dict]] = {}
        self._statuses: dict[tuple[str, str], list[dict]] = {}
        self._buckets: dict[str, list[float]] = {}  # rate-limit bucket -> [limit, remaining, reset]
        self._initial_remaining: int | None = None  # set_rate_limit() without a bucket: budget of new buckets
        self._down = False
        self._latency: tuple[float, float, random.Random] | None = None
        self._holds: list[Hold] = []
        self._started = time.time()
        # when installation tokens expire (a benchmark of a simulated day moves it; JWTs and rate limits stay real)
        self.clock: Callable[[], float] = time.time
        self.validate_responses = True  # the fake's own answers; a long benchmark may spare the time
        self.etag_per_token = False  # True: a renewed token's first conditional GET gets 200, not 304
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self._handlers: dict[str, Callable[[Ctx], tuple[int, Any, dict]]] = {}
        for name in dir(type(self)):
            operation_id = getattr(getattr(type(self), name), "operation_id", None)
            if operation_id is not None:
                assert operation_id not in self._handlers, f"two handlers for {operation_id}"
                self._handlers[operation_id] = getattr(self, name)
        missing = sorted(spec.operation_ids() - set(self._handlers))
        assert not missing, f"every operation of the description needs a handler; none for {missing}"
        assert set(self._handlers) <= spec.operation_ids(), "a handler for an operation the description lacks"

    # lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"

    async def start(self) -> None:
        spec.openapi()
        app = web.Application(client_max_size=30 * 1024**2)
        app.router.add_get(ARCHIVE_PREFIX + "/{owner}/{repo}/legacy.tar.gz/{sha}", self._serve_archive)
        app.router.add_get("/login/oauth/authorize", self._oauth_authorize)
        app.router.add_post("/login/oauth/access_token", self._oauth_access_token)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def close(self) -> None:
        for held in self._holds:
            held.release()
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

    def slow(self, low: float, high: float, rng: random.Random | None = None) -> None:
        """Slow answers: every request is answered (its effect already done) after a delay drawn uniformly from
        [`low`, `high`] seconds with `rng` (seed it for a reproducible run); `slow(0, 0)` ends it."""
        self._latency = (low, high, rng or random.Random()) if high > 0 else None

    def hold(self, operation_id: str) -> Hold:
        """Hold the answer to the next call of `operation_id`: GitHub has done what was asked (created the check
        run, say), the caller does not know yet. `await hold.reached()` waits for that call; `hold.release()` lets
        the answer go (a caller killed meanwhile never gets it)."""
        self._check_operation(operation_id)
        held = Hold(operation_id)
        self._holds.append(held)
        return held

    async def up(self) -> None:
        """End an outage started by `down()`."""
        self._down = False
        if self._site is None:
            await self._listen()

    # state readers

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
        self._failures.append(Failure(operation_id, status, times, dict(headers or {}), rate_limit))

    def _injected(self, operation_id: str, headers: CIMultiDict) -> Reply | None:
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
        return Reply(failure.status, message, headers=extra)

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
        spec_request = spec.SpecRequest(request, raw or None)
        try:
            found = spec.find(request.method, request.path)
        except PathError:
            self._violation(call, "no operation of the OpenAPI description matches it")
            return self._respond(call, spec_request, headers, 404, Reply(404, "Not Found").body)
        call.operation_id = operation_id = found.operation_id
        problems = self._request_problems(request, spec_request, raw, body)
        for problem in problems:
            self._violation(call, problem)
        if self._expected and operation_id not in self._expected:
            self._violation(call, "unexpected call: the test did not expect this operation")
        ctx = Ctx(operation_id, found.params, request.query, body, request)
        bucket = None
        try:
            if self._down:
                raise Reply(503, "Service Unavailable")
            bucket = self._authenticate(ctx, call, headers)
            if (injected := self._injected(operation_id, headers)) is not None:
                raise injected
            if "User-Agent" not in request.headers:
                raise Reply(
                    403,
                    "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.",
                )
            if isinstance(body, str):
                raise Reply(400, "Problems parsing JSON")
            if problems:
                raise Reply(422, "Invalid request.\n\n" + "\n".join(problems))
            status, data, extra = self._handlers[operation_id](ctx)
        except Reply as reply:
            if reply.violation:
                self._violation(call, f"GitHub refuses it: {reply.body['message']}")
            status, data, extra = reply.status, reply.body, reply.headers
        if status == 200 and request.method == "GET" and isinstance(data, dict | list):
            # ETags as GitHub's: a conditional GET whose answer is unchanged gets 304 and costs no rate limit
            # (with `etag_per_token`, the token is part of it: the pessimistic reading of GitHub's `Vary: Authorization`)
            tagged = json.dumps(data, sort_keys=True) + ((call.token or "") if self.etag_per_token else "")
            etag = 'W/"' + hashlib.sha256(tagged.encode()).hexdigest() + '"'
            headers["ETag"] = etag
            if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
                status, data = 304, None
        if bucket is not None:
            self._charge(bucket, headers, status != 304 and operation_id != "rate-limit/get")
        headers.update(extra)
        if self._latency is not None:
            low, high, rng = self._latency
            await asyncio.sleep(rng.uniform(low, high))
        held = next((h for h in self._holds if h.operation_id == operation_id and h.call is None), None)
        if held is not None:
            held.call = call
            held._reached.set()
            await held._released.wait()
        return self._respond(call, spec_request, headers, status, data)

    def _respond(
        self, call: Call, spec_request: spec.SpecRequest, headers: CIMultiDict, status: int, data: Any
    ) -> web.Response:
        call.status = status
        binary = isinstance(data, bytes)  # the raw media type of the contents API
        raw = data if binary else b"" if status in (204, 304) or data is None else json.dumps(data).encode()
        if call.operation_id is not None and not binary and self.validate_responses:
            result = spec.openapi().unmarshal_response(spec_request, spec.SpecResponse(status, raw, headers))
            for error in result.errors:
                if not isinstance(error, ResponseNotFound):  # GitHub documents few error statuses
                    self._violation(call, f"the fake's own {status} response is invalid: {spec.explain(error)}")
        response = web.Response(status=status, body=raw or None, headers=headers)
        if raw and not binary:
            response.content_type, response.charset = "application/json", "utf-8"
        return response

    def _request_problems(
        self, request: web.Request, spec_request: spec.SpecRequest, raw: bytes, body: Any
    ) -> list[str]:
        if "User-Agent" not in request.headers:
            return ["no User-Agent header (GitHub answers 403)"]
        if isinstance(body, str):
            return ["the body is not JSON"]
        if raw and not spec_request.content_type.startswith("application/json"):
            return [f"a JSON body sent as {spec_request.content_type or 'no content type'}"]
        return [spec.explain(e) for e in spec.openapi().unmarshal_request(spec_request).errors]

    def _violation(self, call: Call, problem: str) -> None:
        self.violations.append(f"{call}: {problem}")

    def _check_operation(self, operation_id: str) -> None:
        if operation_id not in spec.operation_ids() | WEB_OPERATIONS:
            raise ValueError(f"{operation_id!r} is not an operation of {spec.SPEC_PATH.name}")

    # authentication

    def _authenticate(self, ctx: Ctx, call: Call, headers: CIMultiDict) -> str | None:
        """Check the credentials the operation needs; returns the rate-limit bucket the call is charged to."""
        if ctx.operation_id in UNAUTHENTICATED_OPERATIONS:
            return None
        scheme, _, credential = ctx.request.headers.get("Authorization", "").partition(" ")
        scheme, credential = scheme.lower(), credential.strip()
        if ctx.operation_id in APP_JWT_OPERATIONS:
            if scheme != "bearer" or not credential:
                raise Reply(401, "A JSON web token could not be decoded")
            self._verify_jwt(credential)
            bucket = self._check_budget(f"app:{self.app_id}", headers)
        elif credential.startswith("ghu_"):
            user = next((t for t in self.user_tokens if t.token == credential), None)
            if scheme not in ("token", "bearer") or user is None or user.expires_at <= time.time():
                raise Reply(401, "Bad credentials")
            call.user, call.token, ctx.user = user.login, user.token, user
            bucket = self._check_budget(f"user:{user.login.lower()}", headers)
            if ctx.operation_id not in USER_OPERATIONS | ANY_TOKEN_OPERATIONS:
                raise Reply(403, "Resource not accessible by integration", violation=True)
        else:
            token = next((t for t in self.tokens if t.token == credential), None)
            if scheme not in ("token", "bearer") or token is None or token.expires_at <= self.clock():
                raise Reply(401, "Bad credentials")
            installation = self.installations[token.installation_id]
            call.installation_id, call.token = installation.id, token.token
            ctx.token = token
            bucket = self._check_budget(f"installation:{installation.id}", headers)
            if installation.suspended:
                raise Reply(403, "This installation has been suspended")
            if ctx.operation_id in USER_OPERATIONS:
                raise Reply(403, "Resource not accessible by integration", violation=True)
            kinds, level = NEEDS[ctx.operation_id]
            if kinds and not any(RANK.get(token.permissions.get(k, ""), 0) >= RANK[level] for k in kinds):
                raise Reply(403, "Resource not accessible by integration")
        if "owner" in ctx.params:
            repo = self.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}".lower())
            if repo is None:
                raise Reply(404, "Not Found")
            ctx.repo = repo
            if ctx.token is not None:
                if repo.full_name not in self.installations[ctx.token.installation_id].repositories:
                    raise Reply(404, "Not Found")
                if ctx.token.repositories is not None and repo.full_name not in ctx.token.repositories:
                    raise Reply(403, "Resource not accessible by integration")
            if ctx.user is not None:  # a user token sees what the person can read, where the App is installed
                installed = any(repo.full_name in i.repositories for i in self.installations.values())
                if not installed or self._level(repo, ctx.user.login) == "none":
                    raise Reply(404, "Not Found")
        return bucket

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
            raise Reply(401, f"A JSON web token could not be decoded ({error})") from None
        if not isinstance(claims["iss"], str) or claims["iss"] not in (str(self.app_id), self.client_id):
            raise Reply(401, f"'Issuer' claim ('iss') must be the App's id, got {claims['iss']!r}")
        if claims["exp"] > time.time() + 600 + 60:
            raise Reply(401, "'Expiration time' claim ('exp') is too far in the future")

    def _bucket(self, bucket: str) -> list[float]:
        now = time.time()
        state = self._buckets.get(bucket)
        if state is None or state[2] <= now:
            remaining = self.rate_limit if self._initial_remaining is None else self._initial_remaining
            state = self._buckets[bucket] = [self.rate_limit, remaining, now + 3600]
        return state

    def _rate_headers(self, state: list[float], headers: CIMultiDict) -> None:
        limit, remaining, reset = (int(x) for x in state)
        headers.update(
            {
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-used": str(limit - remaining),
                "x-ratelimit-resource": "core",
            }
        )

    def _check_budget(self, bucket: str, headers: CIMultiDict) -> str:
        state = self._bucket(bucket)
        if state[1] <= 0:
            self._rate_headers(state, headers)
            who = bucket.split(":")[0]
            raise Reply(
                403,
                f"API rate limit exceeded for {who}. If you reach out to GitHub Support for "
                "help, please include the request ID " + headers["x-github-request-id"] + ".",
            )
        return bucket

    def _charge(self, bucket: str, headers: CIMultiDict, charge: bool) -> None:
        state = self._bucket(bucket)
        if charge:
            state[1] = max(0, state[1] - 1)
        self._rate_headers(state, headers)

    def set_rate_limit(
        self,
        remaining: int,
        *,
        installation: int | None = None,
        user: str | None = None,
        app: bool = False,
        limit: int | None = None,
        reset_in: float = 3600.0,
    ) -> None:
        """The rate-limit budget left: of one installation, one user, the App (JWT calls), or with none named of
        every bucket now and every new one. `limit` also changes the hourly limit; the window resets in `reset_in`."""
        if limit is not None:
            self.rate_limit = limit
        named = [f"installation:{installation}"] if installation is not None else []
        named += [f"user:{user.lower()}"] if user is not None else []
        named += [f"app:{self.app_id}"] if app else []
        if not named:
            self._initial_remaining = remaining
            named = list(self._buckets)
        for bucket in named:
            self._buckets[bucket] = [limit or self.rate_limit, remaining, time.time() + reset_in]

    def rate_limit_remaining(self, *, installation: int | None = None, user: str | None = None) -> int:
        """The budget left in one bucket (the App's own without arguments)."""
        bucket = (
            f"installation:{installation}"
            if installation is not None
            else f"user:{user.lower()}"
            if user is not None
            else f"app:{self.app_id}"
        )
        return int(self._bucket(bucket)[1])

    @handles("rate-limit/get")
    def _get_rate_limit(self, ctx: Ctx):
        bucket = f"installation:{ctx.token.installation_id}" if ctx.token else f"user:{ctx.user.login.lower()}"
        limit, remaining, reset = (int(x) for x in self._bucket(bucket))
        core = {"limit": limit, "remaining": remaining, "reset": reset, "used": limit - remaining}
        search = {"limit": 30, "remaining": 30, "reset": int(time.time()) + 60, "used": 0}
        graphql = {"limit": limit, "remaining": limit, "reset": reset, "used": 0}
        return 200, {"resources": {"core": core, "search": search, "graphql": graphql}, "rate": core}, {}

    # per-operation counts (the scale work counts calls and the 304s that cost nothing)

    def call_counts(self) -> dict[str, int]:
        """Calls per operation that GitHub counts (every answer but 304 Not Modified)."""
        return dict(collections.Counter(c.operation_id for c in self._calls if c.status != 304 and c.operation_id))

    def not_modified_counts(self) -> dict[str, int]:
        """304 Not Modified answers per operation (conditional GETs whose ETag still matched)."""
        return dict(collections.Counter(c.operation_id for c in self._calls if c.status == 304 and c.operation_id))

    # the github.com pages (OAuth) are recorded as calls too, as pseudo-operations `web/...`

    def _web_call(self, request: web.Request, operation_id: str, body: Any) -> Call:
        call = Call(operation_id, request.method, request.path, dict(request.query), body)
        self._calls.append(call)
        if self._expected and operation_id not in self._expected:
            self._violation(call, "unexpected call: the test did not expect this operation")
        return call

    # handlers: checks

    # handlers: issue comments and reactions

    # handlers: collaborators and pull requests

    # helpers

    def _paginate(self, ctx: Ctx, items: list, default: int = 30) -> tuple[list, dict[str, str]]:
        """One page of `items` and GitHub's Link header for `per_page`/`page`."""
        per_page = max(1, min(100, int(ctx.query.get("per_page", default))))
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


class Hold:
    """The answer to one call, held back by `FakeGitHub.hold` until `release()`."""

    def __init__(self, operation_id: str):
        self.operation_id = operation_id
        self.call: Call | None = None  # the call held, once it came
        self._reached = asyncio.Event()
        self._released = asyncio.Event()

    async def reached(self, timeout: float = 60.0) -> Call:
        """The held call, once it came (its effect done, its answer not sent)."""
        async with asyncio.timeout(timeout):
            await self._reached.wait()
        assert self.call is not None
        return self.call

    def release(self) -> None:
        self._released.set()


@pytest.fixture
async def fake_github():
    """A running FakeGitHub; the test fails at teardown on any violation or unmet expectation."""
    async with FakeGitHub() as fake:
        yield fake
        fake.verify()
