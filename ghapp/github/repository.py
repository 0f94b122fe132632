"""A repository's content through GitHub: `.github/preview.yml` (contents API, conditional requests) and the
archive of a commit (tarball API). Implements `ghapp.core.repoconfig.RepositoryFiles`."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

import aiohttp

from ghapp.core.model import Environment
from ghapp.core.repoconfig import RepositoryFile
from ghapp.github.client import USER_AGENT, GitHubApp
from ghapp.sources import SourceLimits, UnsafeArchive

CHUNK = 256 * 1024
# An archive may take longer than the session's 30 s in all; a stalled one still fails.
ARCHIVE_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_read=60)


class GitHubRepositoryFiles:
    def __init__(self, app: GitHubApp, archive_limit: int = SourceLimits.max_bytes) -> None:
        self.app = app
        self.archive_limit = archive_limit

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        raise NotImplementedError  # the repository configuration (issue 10) reads the file here

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        """`GET /repos/{owner}/{repo}/tarball/{sha}` with the installation's token (narrowed to the repository)
        answers 302 to a short-lived archive URL on another host; that one is fetched without the token and
        streamed to `destination`, at most `archive_limit` bytes."""
        if env.installation_id is None:
            raise RuntimeError(f"{env.label} has no installation: cannot download its archive")
        token = await self.app.token(env.installation_id, env.repo_id)
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
