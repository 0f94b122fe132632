"""A repository read from a local directory: what `ghapp demo` (and offline tests) use instead of GitHub's
contents and tarball API. Implements `ghapp.core.repoconfig.RepositoryFiles`: every ref and commit shows the
directory as it is now."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from ghapp.core.model import Environment
from ghapp.core.repoconfig import RepositoryFile


def blob_sha(data: bytes) -> str:
    """Git's object id of a file with this content (`git hash-object`), as GitHub's contents API reports it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class LocalRepositoryFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()

    def _files(self) -> list[Path]:
        """Regular files and directories under the directory, sorted; links and anything else are left out."""
        found = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)) and d != "__pycache__")
            for name in sorted([*dirs, *files]):
                path = Path(root, name)
                if path.is_dir() and not path.is_symlink() or path.is_file() and not path.is_symlink():
                    found.append(path)
        return found

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            return None
        file = self.directory / relative
        if not file.is_file() or file.is_symlink():
            return None
        data = file.read_bytes()
        return RepositoryFile(data.decode("utf-8", errors="replace"), blob_sha(data))

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        """The directory as GitHub's archive of `sha`: gzip'd tar, one top directory `<owner>-<repo>-<sha7>/`."""
        await asyncio.to_thread(lambda: Path(destination).write_bytes(self.archive(env.repository, sha)))

    def archive(self, repository: str, sha: str) -> bytes:
        top = f"{repository.replace('/', '-')}-{sha[:7]}"
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_entry(top, tarfile.DIRTYPE, 0o775))
            for path in self._files():
                name = f"{top}/{path.relative_to(self.directory).as_posix()}"
                if path.is_dir():
                    tar.addfile(_entry(name, tarfile.DIRTYPE, 0o775))
                else:
                    data = path.read_bytes()
                    info = _entry(name, tarfile.REGTYPE, 0o775 if path.stat().st_mode & 0o111 else 0o664)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return out.getvalue()


def _entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    return info
