"""GitHub App authentication (JWT, installation tokens narrowed to one repository, cached) and an API client that
retries 5xx, 429 and rate limits with capped backoff honouring `Retry-After`, sends conditional GETs (ETags: a
304 costs no rate limit) from a bounded cache per App, and records each installation's remaining budget."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping

import aiohttp
import cachetools
from gidgethub import BadRequest, GitHubBroken, HTTPException, RateLimitExceeded
from gidgethub import apps as gh_apps
from gidgethub.aiohttp import GitHubAPI

from ghapp.core.policy import backoff

log = logging.getLogger(__name__)

USER_AGENT = "ghapp (preview environments)"
# What the app needs, and nothing more (app.yml asks for the same).
PERMISSIONS = {
    "checks": "write",
    "contents": "read",
    "deployments": "write",
    "issues": "write",
    "pull_requests": "read",
    "statuses": "read",
    "metadata": "read",
}
# Reading a repository's content (`.github/preview.yml`, archives) gets a token of its own: an installation made
# before ghapp read content has not granted `contents` until its owner accepts the new permission, and reporting
# must keep working meanwhile.
CONTENT_PERMISSIONS = {"contents": "read", "metadata": "read"}
REPORT_PERMISSIONS = {k: v for k, v in PERMISSIONS.items() if k != "contents"}
TOKEN_REFRESH_MARGIN = 10 * 60  # installation tokens live an hour; renew with ten minutes to spare
MAX_RETRIES = 4
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
CACHE_BYTES = 8 * 1024 * 1024  # GET answers kept per App for conditional requests, counted as JSON text


def retry_delay(exc: BaseException, attempt: int, now: float | None = None) -> float | None:
    """Seconds to wait before retrying after `exc` on the `attempt`-th try; None: do not retry (pure)."""
    if attempt > MAX_RETRIES:
        return None
    wait = backoff(attempt, BACKOFF_BASE, BACKOFF_CAP)
    headers = getattr(exc, "headers", None) or {}
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return min(BACKOFF_CAP, max(0.0, float(retry_after)))
        except ValueError:
            return wait
    if isinstance(exc, RateLimitExceeded):
        reset = exc.rate_limit.reset_datetime.timestamp()
        return min(BACKOFF_CAP, max(1.0, reset - (now or time.time())))
    if isinstance(exc, GitHubBroken):
        return wait
    if isinstance(exc, BadRequest) and exc.status_code == 429:
        return wait
    if isinstance(exc, BadRequest) and exc.status_code == 403 and "secondary rate limit" in str(exc).lower():
        return 60.0  # GitHub: wait at least a minute when no Retry-After is given
    return None


class RetryingGitHubAPI(GitHubAPI):
    """gidgethub's client, retrying what GitHub asks to be retried (via its `handle_rate_limit_error` hook), and
    telling `on_headers` the headers of every answer (the rate-limit budget; 304s carry it too)."""

    def __init__(self, *args, on_headers: Callable[[Mapping[str, str]], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_headers = on_headers

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        status, response_headers, data = await super()._request(method, url, headers, body)
        if self._on_headers is not None:
            self._on_headers(response_headers)
        return status, response_headers, data

    async def handle_rate_limit_error(self, *, method: str, url: str, exception: HTTPException, attempt: int) -> bool:
        delay = retry_delay(exception, attempt)
        if delay is None:
            return False
        log.info("GitHub %s %s: %s; retrying in %.1fs", method, url, exception.status_code, delay)
        await asyncio.sleep(delay)
        return True


class ResponseCache(cachetools.LRUCache):
    """gidgethub's cache (URL -> ETag, Last-Modified, data, next page), least recently used first out, bounded by
    the size of what it keeps: the data as compressed JSON. The resync walks every repository's pull-request listing
    in turn (about 70 KB of JSON for 5 pull requests), so a cache holding them uncompressed was too small for 200
    repositories and, walked round-robin, never answered a 304 (bench/github_budget.py); compressed they take a
    tenth. An answer larger than the whole cache is simply not kept."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=_packed_size)

    def __setitem__(self, key, value) -> None:
        etag, last_modified, data, more = value
        packed = zlib.compress(json.dumps(data, separators=(",", ":"), default=str).encode(), 1)
        entry = (etag, last_modified, packed, more)
        if _packed_size(entry) <= self.maxsize:
            super().__setitem__(key, entry)

    def __getitem__(self, key):
        etag, last_modified, packed, more = super().__getitem__(key)
        return etag, last_modified, json.loads(zlib.decompress(packed)), more


def _packed_size(entry) -> int:
    etag, last_modified, packed, more = entry
    return len(packed) + sum(len(text or "") for text in (etag, last_modified, more)) + 64  # + the tuple's keeping


class RateBudget:
    """The last `x-ratelimit-remaining` seen per installation (all its tokens share one budget), forgotten once
    its window has reset."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[int, float]] = {}  # installation -> (remaining, reset epoch)

    def observe(self, installation_id: int, headers: Mapping[str, str]) -> None:
        try:
            remaining = int(headers["x-ratelimit-remaining"])
            reset = float(headers.get("x-ratelimit-reset", time.time() + 3600))
        except (KeyError, ValueError):
            return
        self._seen[installation_id] = (remaining, reset)

    def remaining(self, installation_id: int, now: float | None = None) -> int | None:
        """None: not known (nothing seen yet, or the window has reset since)."""
        seen = self._seen.get(installation_id)
        if seen is None or seen[1] <= (time.time() if now is None else now):
            return None
        return seen[0]


class GitHubApp:
    """One App: its JWT, installation tokens cached per (installation, repository), one bounded cache of GET
    answers for conditional requests, and the rate-limit budget of each installation."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        app_id: str,
        private_key: str,
        base_url: str,
        cache_bytes: int = CACHE_BYTES,
    ):
        self.session = session
        self.app_id = str(app_id)
        self.private_key = private_key
        self.base_url = base_url
        self._tokens: cachetools.TTLCache = cachetools.TTLCache(maxsize=4096, ttl=3600)
        self._locks: dict[tuple, asyncio.Lock] = {}
        self._app_api = RetryingGitHubAPI(session, USER_AGENT, base_url=base_url)
        # gidgethub keys it by URL and sends If-None-Match / If-Modified-Since; 304s are answered from here.
        self.cache = ResponseCache(cache_bytes)
        self.budget = RateBudget()
        self.clock: Callable[[], float] = time.time  # when a token needs renewing (a benchmark simulates a day)

    def jwt(self) -> str:
        return gh_apps.get_jwt(app_id=self.app_id, private_key=self.private_key)

    async def token(
        self,
        installation_id: int,
        repository_id: int | str | None = None,
        permissions: Mapping[str, str] = REPORT_PERMISSIONS,
    ) -> str:
        """An installation token with `permissions`, narrowed to one repository, given by id or (when only its name
        is known, like an organisation's `.github`) by name."""
        key = (installation_id, repository_id, tuple(sorted(permissions.items())))
        cached = self._tokens.get(key)
        if cached and cached[1] - self.clock() > TOKEN_REFRESH_MARGIN:
            return cached[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached and cached[1] - self.clock() > TOKEN_REFRESH_MARGIN:
                return cached[0]
            body: dict = {"permissions": dict(permissions)}
            if isinstance(repository_id, str):
                body["repositories"] = [repository_id]
            elif repository_id is not None:
                body["repository_ids"] = [repository_id]
            url = f"/app/installations/{installation_id}/access_tokens"
            try:
                data = await self._app_api.post(url, data=body, jwt=self.jwt())
            except BadRequest as e:
                if e.status_code != 422 or dict(permissions) != REPORT_PERMISSIONS:
                    raise  # the content token's refusal is handled by its caller (github/repository.py)
                # The installation has not accepted a permission added to the App since (app.yml), e.g. `statuses`:
                # report with what it granted rather than not at all; what needs the missing one fails on its own.
                log.warning("installation %d has not accepted all of %s: %s", installation_id, PERMISSIONS, e)
                del body["permissions"]
                data = await self._app_api.post(url, data=body, jwt=self.jwt())
            expires = dt.datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00")).timestamp()
            self._tokens[key] = (data["token"], expires)
            return data["token"]

    async def installation(
        self,
        installation_id: int,
        repository_id: int | str | None = None,
        permissions: Mapping[str, str] = REPORT_PERMISSIONS,
    ) -> GitHubAPI:
        """A client acting as the installation, narrowed to one repository (id, or name) when given."""
        token = await self.token(installation_id, repository_id, permissions)
        return RetryingGitHubAPI(
            self.session,
            USER_AGENT,
            oauth_token=token,
            base_url=self.base_url,
            cache=self.cache,
            on_headers=lambda headers: self.budget.observe(installation_id, headers),
        )

    def forget(self, installation_id: int) -> None:
        for key in [k for k in self._tokens if k[0] == installation_id]:
            self._tokens.pop(key, None)
