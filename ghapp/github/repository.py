"""A repository's content through GitHub: `.github/preview.yml` (contents API, conditional requests) and the
archive of a commit (tarball API). Implements `ghapp.workers.resolve.RepositoryFiles`."""

from __future__ import annotations

from ghapp.core.model import Environment
from ghapp.core.repoconfig import RepositoryFile
from ghapp.github.client import GitHubApp


class GitHubRepositoryFiles:
    def __init__(self, app: GitHubApp) -> None:
        self.app = app

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        raise NotImplementedError  # the repository configuration (issue 10) reads the file here

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        raise NotImplementedError  # the source checkout (issue 10) downloads the archive here
