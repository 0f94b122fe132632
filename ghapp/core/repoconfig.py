"""`.github/preview.yml`: what a repository says about its previews, and the plan a preview is applied with.

The configuration a preview is resolved with comes from the repository's file (at the PR's head commit; at the
base branch for a fork), else the organisation's `.github` repository, else the operator's defaults. Resolving it
(ghapp/workers/resolve.py) ends in a `Plan` (apply with these inputs) or a `Held` (not now, and why)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from ghapp.core.contract import Access, Hold
from ghapp.core.model import Environment


@dataclasses.dataclass(frozen=True)
class RepoConfig:
    """Version 1 of the file; every key optional. A missing key keeps what ghapp does without a file."""

    module: str | None = None  # a catalog name (GHAPP_MODULES/<name>); None: the operator's module
    module_path: str | None = None  # `module: {path: ...}`: a Terraform directory in the repository
    deploy: str = "auto"  # auto | manual
    drafts: bool = True
    branches_ignore: tuple[str, ...] = ()
    labels_require: tuple[str, ...] = ()
    labels_ignore: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    wait_for: tuple[str, ...] = ()
    source: bool = False
    ttl: float | None = None  # seconds; None: the operator's GHAPP_ENV_TTL
    sleep_after: float | None = None  # seconds; None: the operator's default
    access: Access | None = None  # None: the operator's default
    max_previews: int | None = None  # None: the operator's GHAPP_MAX_PREVIEWS
    inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ConfigOrigin:
    """Where the effective configuration came from: `repository`, `organization` or `operator`; the file's blob
    SHA and the ref it was read at, when there is a file."""

    kind: str = "operator"
    blob_sha: str | None = None
    ref: str | None = None

    def describe(self) -> str:
        if self.kind == "operator":
            return "the operator's defaults (no .github/preview.yml)"
        where = "the organization's .github repository" if self.kind == "organization" else "the repository"
        blob = f" (blob {self.blob_sha[:7]})" if self.blob_sha else ""
        return f".github/preview.yml from {where} at {self.ref}{blob}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Apply the preview this way."""

    config: RepoConfig = RepoConfig()
    origin: ConfigOrigin = ConfigOrigin()
    module: str | None = None  # a Terraform directory on this machine; None: the operator's GHAPP_TERRAFORM_MODULE
    tf_vars: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the configuration's inputs, encoded
    source_dir: str | None = None  # the PR's code at the commit, read-only, when the configuration asks for it


@dataclasses.dataclass(frozen=True)
class Held:
    """Not applied now: `hold` says which kind of reason (skipped, waiting, invalid, queued), `reason` says it to
    people. A skipped preview that exists is destroyed; the other holds keep what exists as it is."""

    hold: Hold
    reason: str
    origin: ConfigOrigin = ConfigOrigin()
    config: RepoConfig | None = None


@dataclasses.dataclass(frozen=True)
class RepositoryFile:
    text: str
    blob_sha: str


class RepositoryFiles(Protocol):
    """A repository's content at a commit or branch: GitHub's contents and tarball API, or a local directory (the
    demo's sample repository)."""

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        """The file at `ref` (None: the default branch); None if there is no such file."""
        ...

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        """Write the repository's archive (gzip'd tar) at `sha` to the file `destination`."""
        ...
