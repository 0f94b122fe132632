"""A repository's content through GitHub: `.github/preview.yml` (contents API, conditional requests) and the
archive of a commit (tarball API). Implements `ghapp.core.repoconfig.RepositoryFiles`."""

from __future__ import annotations

import base64
import binascii
import logging
from urllib.parse import quote

from gidgethub import BadRequest

from ghapp.core.model import Environment
from ghapp.core.repoconfig import FileTooLarge, RepositoryFile
from ghapp.github.client import CONTENT_PERMISSIONS, GitHubApp

log = logging.getLogger(__name__)


class GitHubRepositoryFiles:
    def __init__(self, app: GitHubApp) -> None:
        self.app = app

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        """The contents API, as the environment's installation with a token narrowed to `repository`: the
        environment's own by id, another (the organisation's `.github`) by name. The client's ETag cache makes a
        file read again answer 304, at no rate-limit cost."""
        if env.installation_id is None:
            return None
        same = repository.lower() == env.repository.lower()
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
                return None
            if not same:  # the installation cannot read that repository (or there is none)
                return None
            raise
        url = f"/repos/{repository}/contents/{quote(path)}"
        if ref:
            url += f"?ref={quote(ref, safe='')}"
        try:
            data = await gh.getitem(url)
        except BadRequest as e:
            if e.status_code == 404:
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
        raise NotImplementedError  # the source checkout (issue 10) downloads the archive here
