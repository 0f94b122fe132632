"""Keeping what a run starts (Terraform, providers, a preview's code) away from the app's secrets.

As root the app runs Terraform as an unprivileged system user (`RUN_USER`) that cannot read the app's files or
reach the embedded PostgreSQL's socket. Without root it protects itself instead: not dumpable (no
`/proc/<pid>/environ`, memory or ptrace for same-uid processes), secrets dropped from `os.environ` once read,
private files 0600 and directories 0700. docs/security.md says which door each of these shuts.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

RUN_USER = "ghapp-run"
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_PR_SET_DUMPABLE = 4
# Settings that hold secrets: read once into Settings, then removed from the process environment.
SECRET_VARIABLES = (
    "GITHUB_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "GHAPP_ADMIN_TOKEN",
    "GITHUB_CLIENT_SECRET",
    "DATABASE_URL",
    "PG_CONN_STR",
)
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|_KEY$|^KEY$|API_?KEY|CONN_STR", re.I)
REDACTED = "[redacted]"


class IsolationError(RuntimeError):
    """The run user cannot be made or used; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class RunUser:
    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict:
        """`user=`/`group=`/`extra_groups=[]` for subprocess and asyncio: no supplementary group of the app's."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def find_useradd() -> str:
    """`useradd` by absolute path: CI and fresh machines run with a PATH that has no sbin directory."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    found = shutil.which("useradd", path=path)
    if not found:
        raise IsolationError(
            "cannot create a system user: no useradd in PATH or /usr/sbin, /sbin (install the passwd package, "
            "or create the user yourself)"
        )
    return found


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The system user `name`, created (no login shell, no home) when missing; needs root."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise IsolationError(f"the system user {name!r} does not exist and only root can create it")
    done = subprocess.run(
        [find_useradd(), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise IsolationError(
            f"could not create the system user {name!r}: {done.stderr.strip() or done.returncode}"
        ) from None


def run_user() -> RunUser | None:
    """The user Terraform runs as: `RUN_USER` when the app is root, else None (same user, self-protection)."""
    if os.geteuid() != 0:
        return None
    entry = ensure_system_user(RUN_USER)
    return RunUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def set_not_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): same-uid processes can no longer read our /proc/<pid>/environ, mem or ptrace us."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def drop_secrets(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Remove the secret settings from the process environment (Settings already holds them)."""
    dropped = [name for name in SECRET_VARIABLES if name in environ]
    for name in dropped:
        del environ[name]
    return dropped


def private_dir(path: Path) -> Path:
    """Create `path` if needed and make it 0700 (the app's own data: nobody else lists or enters it)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def protect(settings_data_dir: Path, files: Iterable[Path] = ()) -> None:
    """At start: not dumpable, the data dir closed (0711: the run user may only pass through to its own work
    directory), the secrets' files 0600."""
    set_not_dumpable()
    settings_data_dir.mkdir(parents=True, exist_ok=True)
    settings_data_dir.chmod(0o711 if os.geteuid() == 0 else 0o700)
    for file in files:
        try:
            if file.is_file() and file.stat().st_uid == os.geteuid():
                file.chmod(0o600)
        except OSError as e:
            log.warning("cannot restrict %s: %s", file, e)


def traverse_only(path: Path) -> None:
    """Let other users pass through every parent of `path` (o+x), without listing them."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning(
                "letting other users pass through %s (o+x, no listing) so the run user reaches %s", parent, path
            )
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def reachable_tools(binary: str) -> None:
    """The run user must execute Terraform and this Python (the bundled Terraform and terraform/local use it),
    e.g. a pyenv interpreter under /root."""
    for tool in (Path(sys.executable), Path(sys.executable).resolve(), Path(binary), Path(binary).resolve()):
        traverse_only(tool)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Replaces known secret values in text with `[redacted]`; multi-line values (PEM keys) line by line."""

    def __init__(self, values: Iterable[str | None] = ()):
        found: set[str] = set()
        for value in values:
            for part in (value or "").splitlines() or [value or ""]:
                part = part.strip()
                if len(part) >= 6 and not part.startswith("-----"):  # PEM armour lines are not secret
                    found.add(part)
        self.values = sorted(found, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, self.values))) if self.values else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    @classmethod
    def for_settings(cls, settings, env: Mapping[str, str] = {}) -> Redactor:
        """The settings' secrets, the passwords in database URLs, and operator-passed variables named like secrets."""
        from urllib.parse import urlsplit

        values = [settings.private_key, settings.webhook_secret, settings.admin_token]
        values.append(getattr(settings, "client_secret", None))
        for url in (settings.database_url, env.get("PG_CONN_STR")):
            if url:
                values.append(url)
                try:
                    values.append(urlsplit(url).password)
                except ValueError:
                    pass
        values += [v for k, v in env.items() if looks_secret(k)]
        return cls(values)
