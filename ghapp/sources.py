"""The pull request's code at a commit (`source: true`): the repository's archive, fetched once per (repository,
commit), extracted with every member checked, and shared read-only by the environments at that commit.

On disk: `<data dir>/sources/<repository id>/<sha>/`, made in a temporary directory next to it and renamed into
place, so a reader sees a whole tree or none. Each replica keeps its own; `prune` removes the trees no environment
needs any more. Extraction refuses whatever could reach outside the tree or exhaust the disk (docs/security.md,
"The pull request's code"): absolute names, `..`, links of any kind, devices and fifos, and more than the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gzip
import logging
import os
import re
import shutil
import tarfile
import time
import weakref
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, cast

from ghapp.config import Settings
from ghapp.core.model import Environment
from ghapp.core.repoconfig import RepositoryFiles
from ghapp.isolation import RunUser, traverse_only

log = logging.getLogger(__name__)

SHA = re.compile(r"[0-9a-f]{40}\Z")
CHUNK = 256 * 1024
TEMPORARY = ".incoming-"  # prefix of trees being made; `prune` removes stale ones
FILE_MODE, EXECUTABLE_MODE, DIR_MODE = 0o444, 0o555, 0o555
PASSABLE = 0o711  # `sources/` and `sources/<repo id>/`: the run user passes through, never lists


class SourceError(Exception):
    """The commit's code cannot be had now (GitHub unreachable, the disk full): worth retrying."""


class UnsafeArchive(SourceError):
    """The archive breaks a rule (a link, `..`, a limit): the same commit will always fail the same way. The
    message names the member and the rule, and is shown on the pull request."""


@dataclasses.dataclass(frozen=True)
class SourceLimits:
    max_bytes: int = 1024**3  # GHAPP_SOURCE_MAX_BYTES: the archive, and the tree once extracted
    max_files: int = 100_000  # GHAPP_SOURCE_MAX_FILES: files and directories
    max_file_bytes: int = 100 * 1024**2  # GHAPP_SOURCE_MAX_FILE_BYTES: one file

    @classmethod
    def of(cls, settings: Settings) -> SourceLimits:
        return cls(settings.source_max_bytes, settings.source_max_files, settings.source_max_file_bytes)


def member_path(name: str) -> str | None:
    """The archive member's path inside the tree, GitHub's top directory (`owner-repo-sha/`) stripped; None for
    that top directory itself. Raises UnsafeArchive for an absolute name or a `..` component."""
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise UnsafeArchive(f"the archive member {name!r} has an absolute or malformed path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"the archive member {name!r} has a '..' component")
    if len(parts) <= 1:
        return None
    return "/".join(parts[1:])


def _stream_limit(limits: SourceLimits) -> int:
    """Most bytes a tar within the limits can take: its files, and headers (512 bytes, a few per member)."""
    return limits.max_bytes + (limits.max_files + 16) * 4 * 512


class _Bounded:
    """A read-only stream that refuses to give more than `limit` bytes: the decompressed archive, so a gzip bomb
    stops there (in a member's data, or in a header tarfile would read whole)."""

    def __init__(self, stream, limit: int) -> None:
        self.stream, self.left = stream, limit

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size >= 0 and size <= self.left + 1 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise UnsafeArchive("the archive decompresses to more than GHAPP_SOURCE_MAX_BYTES allows")
        return data


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a fifo"
    return f"an entry of type {member.type!r}"


def extract(archive: Path, destination: Path, limits: SourceLimits) -> None:
    """Extract the gzip'd tar `archive` into the new directory `destination`, read by streaming (a bomb is stopped
    by the limits, never held in memory): regular files and directories only, under one top directory. The tree
    is left read-only (files 0444, or 0555 when executable; directories 0555)."""
    destination.mkdir(mode=0o700)
    top: str | None = None
    count = total = 0
    try:
        with (
            gzip.open(archive) as unzipped,
            tarfile.open(fileobj=cast(IO[bytes], _Bounded(unzipped, _stream_limit(limits))), mode="r|") as tar,
        ):
            for member in tar:
                root = next((p for p in member.name.split("/") if p not in ("", ".")), "")
                if top is None:
                    top = root
                path = member_path(member.name)
                if root != top:
                    raise UnsafeArchive(
                        f"the archive member {member.name!r} is outside its single top directory {top!r}"
                    )
                if not (member.isdir() or member.isreg()):
                    raise UnsafeArchive(
                        f"the archive member {member.name!r} is {_kind(member)}; ghapp extracts only regular "
                        "files and directories"
                    )
                if path is None:
                    continue
                count += 1
                if count > limits.max_files:
                    raise UnsafeArchive(
                        f"the archive has more than {limits.max_files} files and directories (GHAPP_SOURCE_MAX_FILES)"
                    )
                target = destination / path
                if member.isdir():
                    target.mkdir(mode=0o700, parents=True, exist_ok=True)
                    continue
                if member.size > limits.max_file_bytes:
                    raise UnsafeArchive(
                        f"the archive member {member.name!r} has {member.size} bytes, more than "
                        f"{limits.max_file_bytes} (GHAPP_SOURCE_MAX_FILE_BYTES)"
                    )
                total += member.size
                if total > limits.max_bytes:
                    raise UnsafeArchive(
                        f"the archive extracts to more than {limits.max_bytes} bytes (GHAPP_SOURCE_MAX_BYTES)"
                    )
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                # O_EXCL|O_NOFOLLOW: a member named twice is refused, and nothing is written through a link
                # (none can exist: this code never makes one).
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with open(fd, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                mode = EXECUTABLE_MODE if member.mode & 0o111 else FILE_MODE
                os.chmod(target, mode)
    except FileExistsError as e:
        raise UnsafeArchive(f"the archive names {e.filename} twice") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UnsafeArchive(f"the archive cannot be read as a gzip'd tar: {e}") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise SourceError(f"cannot extract the archive now: {e}") from None
        raise UnsafeArchive(f"the archive cannot be extracted: {e}") from None
    if top is None:
        raise UnsafeArchive("the archive is empty")
    for directory, _dirs, _files in os.walk(destination, topdown=False):
        os.chmod(directory, DIR_MODE)


class Sources:
    """`checkout(env, sha)`: the directory holding the repository at `sha`, made once per (repository, commit)
    even when several environments ask at once."""

    def __init__(
        self,
        root: Path,
        files: RepositoryFiles | None,
        limits: SourceLimits = SourceLimits(),
        run_user: RunUser | None = None,
    ) -> None:
        self.root = root
        self.files = files
        self.limits = limits
        self.run_user = run_user
        self._locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()

    def path(self, repo_id: int, sha: str) -> Path:
        return self.root / str(repo_id) / sha

    async def checkout(self, env: Environment, sha: str) -> str:
        """The absolute path of the read-only tree of `env`'s repository at `sha` (40 hex digits). Raises
        UnsafeArchive for an archive that breaks a rule, SourceError when it cannot be had now."""
        if not SHA.match(sha):
            raise SourceError(f"cannot check out {sha!r}: not a full commit SHA")
        if self.files is None:
            raise SourceError("cannot check out the pull request's code: ghapp has no access to repositories offline")
        key = (env.repo_id, sha)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            target = self.path(*key)
            if not target.is_dir():
                await self._fetch(env, sha, target)
            os.utime(target)  # in use now: `prune` leaves recently used trees alone
            return str(target)

    async def _fetch(self, env: Environment, sha: str, target: Path) -> None:
        assert self.files is not None
        parent = target.parent
        for directory in (self.root, parent):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(PASSABLE)
        if self.run_user is not None:
            traverse_only(self.root)  # the run user reaches the tree (Terraform and the preview read it)
        work = parent / f"{TEMPORARY}{sha}-{os.getpid()}-{id(target):x}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(mode=0o700)
        try:
            archive = work / "archive.tar.gz"
            started = time.monotonic()
            await self.files.tarball(env, sha, str(archive))
            size = archive.stat().st_size
            if size > self.limits.max_bytes:
                raise UnsafeArchive(
                    f"the archive has {size} bytes, more than {self.limits.max_bytes} (GHAPP_SOURCE_MAX_BYTES)"
                )
            tree = work / "tree"
            await asyncio.to_thread(extract, archive, tree, self.limits)
            os.replace(tree, target)
            log.info(
                "%s: checked out %s in %.1fs (%d bytes of archive)",
                env.label,
                sha[:7],
                time.monotonic() - started,
                size,
            )
        finally:
            await asyncio.to_thread(remove_tree, work)

    async def prune(self, needed: Iterable[tuple[int, str]], grace: float = 3600.0) -> list[Path]:
        """Remove the trees of (repository id, sha) pairs not in `needed` and not handed to a run for `grace`
        seconds, and temporary trees older than `grace` whose download is over. A tree is removed under its
        commit's lock, so a checkout of that commit waits and fetches it again."""
        keep = {(int(repo), sha) for repo, sha in needed}
        removed = []
        cutoff = time.time() - grace
        for repo_dir in _children(self.root):
            if not repo_dir.name.isdigit():
                continue
            for tree in _children(repo_dir):
                sha = tree.name.removeprefix(TEMPORARY).split("-", 1)[0]
                key = (int(repo_dir.name), sha)
                if key in keep and not tree.name.startswith(TEMPORARY):
                    continue
                lock = self._locks.get(key)
                if lock is None:
                    lock = self._locks[key] = asyncio.Lock()
                if lock.locked():
                    continue  # being fetched or handed out right now
                async with lock:
                    try:
                        if tree.stat().st_mtime > cutoff:
                            continue
                    except FileNotFoundError:
                        continue
                    await asyncio.to_thread(remove_tree, tree)
                removed.append(tree)
            with contextlib.suppress(OSError):
                repo_dir.rmdir()  # only when empty
        return removed


def _children(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()]
    except FileNotFoundError:
        return []


def remove_tree(path: Path) -> None:
    """Delete a read-only tree: its directories are made writable first (never following a link)."""

    def writable_and_retry(function, failed: str, _exc) -> None:
        os.chmod(os.path.dirname(failed), 0o700)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
            function(failed)

    if not path.exists():
        return
    for directory, _dirs, _files in os.walk(path):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(directory, 0o700)
    shutil.rmtree(path, onerror=writable_and_retry)
