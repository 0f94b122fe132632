"""A repository's content through GitHub: `.github/preview.yml` (contents API, conditional requests) and the
archive of a commit (tarball API). Implements `ghapp.core.repoconfig.RepositoryFiles`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from urllib.parse import quote

import aiohttp
import cachetools
from gidgethub import BadRequest

from ghapp.core.model import Environment
from ghapp.core.repoconfig import FileTooLarge, RepositoryFile
from ghapp.github.client import CONTENT_PERMISSIONS, USER_AGENT, GitHubApp
from ghapp.sources import SourceLimits, UnsafeArchive

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
# An archive may take longer than the session's 30 s in all; a stalled one still fails.
ARCHIVE_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)
# How long a read that cannot succeed is not tried again: an organisation without a `.github` repository the
# installation can read (or without the file in it), an installation that has not granted `contents: read`.
# Every resolve would otherwise pay a refused token request or a 404 for it; a `.github` repository or a grant
# added meanwhile is seen this long after at the latest.
UNREADABLE_TTL = 600.0
UNREADABLE_MAX = 4096  # (installation, repository) pairs remembered, least recently used first out


class GitHubRepositoryFiles:
    def __init__(self, app: GitHubApp, archive_limit: int = SourceLimits.max_bytes) -> None:
        self.app = app
        self.archive_limit = archive_limit
        # (installation,): no `contents` grant; (installation, repository): not readable; (installation, repository,
        # path): no such file at its default branch. Only another repository's (the organisation's `.github`) is
        # remembered: the pull request's own file may appear at its next commit.
        self._unreadable: cachetools.TTLCache = cachetools.TTLCache(
            maxsize=UNREADABLE_MAX, ttl=UNREADABLE_TTL, timer=lambda: app.clock()
        )

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        """The contents API, as the environment's installation with a token narrowed to `repository`: the
        environment's own by id, another (the organisation's `.github`) by name. The client's ETag cache makes a
        file read again answer 304, at no rate-limit cost."""
        if env.installation_id is None:
            return None
        same = repository.lower() == env.repository.lower()
        grant, readable, file = (
            (env.installation_id,),
            (env.installation_id, repository.lower()),
            (env.installation_id, repository.lower(), path),
        )
        if grant in self._unreadable or (not same and (readable in self._unreadable or file in self._unreadable)):
            return None
        try:
            gh = await self.app.installation(
                env.installation_id, env.repo_id if same else repository.split("/")[-1], CONTENT_PERMISSIONS
            )
        except BadRequest as e:
            if e.status_code != 422:
                raise
            if "permission" in str(e).lower():  # installed before ghapp read content; its owner has not accepted
                log.warning(
                    "installation %s has not granted `contents: read`: %s is deployed with the operator's defaults "
                    "until an owner accepts the App's new permission",
                    env.installation_id,
                    env.label,
                )
                self._unreadable[grant] = True
                return None
            if not same:  # the installation cannot read that repository (or there is none)
                self._unreadable[readable] = True
                return None
            raise
        url = f"/repos/{repository}/contents/{quote(path)}"
        if ref:
            url += f"?ref={quote(ref, safe='')}"
        try:
            data = await gh.getitem(url)
        except BadRequest as e:
            if e.status_code == 404:
                if not same and ref is None:
                    self._unreadable[file] = True
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None  # a directory, a submodule
        if data.get("encoding") != "base64":
            raise FileTooLarge(int(data.get("size") or 0))
        try:
            content = base64.b64decode(str(data.get("content") or ""))
        except binascii.Error as e:
            raise ValueError(f"GitHub sent {path} of {repository} in broken base64: {e}") from None
        return RepositoryFile.of(content, str(data["sha"]))

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        """`GET /repos/{owner}/{repo}/tarball/{sha}` with the installation's token (narrowed to the repository)
        answers 302 to a short-lived archive URL on another host; that one is fetched without the token and
        streamed to `destination`, at most `archive_limit` bytes."""
        if env.installation_id is None:
            raise RuntimeError(f"{env.label} has no installation: cannot download its archive")
        token = await self.app.token(env.installation_id, env.repo_id, permissions=CONTENT_PERMISSIONS)
        url = f"{self.app.base_url}/repos/{quote(env.repository)}/tarball/{quote(sha)}"
        headers = {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}
        async with self.app.session.get(url, headers=headers, allow_redirects=False, timeout=ARCHIVE_TIMEOUT) as answer:
            if answer.status in (301, 302, 303, 307, 308) and "Location" in answer.headers:
                location = answer.headers["Location"]
            else:
                answer.raise_for_status()
                await self._save(answer, destination)  # answered directly (never by github.com; allowed anyway)
                return
        # The archive host: no Authorization (the URL carries its own token), whatever the session defaults.
        async with self.app.session.get(
            location, headers={"User-Agent": USER_AGENT}, timeout=ARCHIVE_TIMEOUT
        ) as archive:
            archive.raise_for_status()
            await self._save(archive, destination)

    async def _save(self, answer: aiohttp.ClientResponse, destination: str) -> None:
        if answer.content_length is not None and answer.content_length > self.archive_limit:
            raise UnsafeArchive(
                f"the archive has {answer.content_length} bytes, more than {self.archive_limit} "
                "(GHAPP_SOURCE_MAX_BYTES)"
            )
        written = 0
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            async for chunk in answer.content.iter_chunked(CHUNK):
                written += len(chunk)
                if written > self.archive_limit:
                    raise UnsafeArchive(
                        f"the archive has more than {self.archive_limit} bytes (GHAPP_SOURCE_MAX_BYTES)"
                    )
                await asyncio.to_thread(_write_all, fd, chunk)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
