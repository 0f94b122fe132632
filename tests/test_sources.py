"""The pull request's code at its commit (`source: true`): archives fetched once per commit, extracted safely,
read-only, pruned; and end to end, a preview served by the PR's own files at its commit, then at the pushed one."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from ghapp import isolation
from ghapp.core.model import Environment
from ghapp.demo_repository import LocalRepositoryFiles, blob_sha
from ghapp.github.client import GitHubApp
from ghapp.github.repository import GitHubRepositoryFiles
from ghapp.sources import TEMPORARY, SourceLimits, Sources, UnsafeArchive
from ghapp.web import keys
from ghapp.web.app import create_app
from ghapp.workers.periodic import prune_sources
from tests.support import ROOT, environment, processes_in_dir, processes_with, runs, wait_for
from tests.test_policy import environment as make_env

REPO = "Codertocat/Hello-World"
REPO_ID = 186853002
INSTALLATION = 1
SHA1 = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
SHA2 = "2222222222222222222222222222222222222222"
TOP = "Codertocat-Hello-World-ec26c3e"


def env_of(env_id: int = 1, **fields) -> Environment:
    return make_env(id=env_id, repo_id=REPO_ID, repository=REPO, installation_id=INSTALLATION, **fields)


# Archives, as GitHub would serve them or as an attacker would.


def entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, mode: int = 0o664, **fields) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, len(data) if kind == tarfile.REGTYPE else 0
    for field, value in fields.items():
        setattr(info, field, value)
    return info, data


def archive(*entries: tuple, top: bool = True) -> bytes:
    """A gzip'd tar with git's global pax header (the commit), GitHub's top directory first unless `top=False`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": SHA1}) as tar:
        if top:
            tar.addfile(entry(TOP, kind=tarfile.DIRTYPE, mode=0o775)[0])
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return out.getvalue()


@dataclasses.dataclass
class ArchiveFiles:
    """A repository whose every commit is the given archive bytes (a stand-in for GitHub's tarball)."""

    data: bytes
    calls: int = 0

    async def read(self, env, repository, path, ref):
        return None

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        self.calls += 1
        Path(destination).write_bytes(self.data)


def sources_for(tmp_path: Path, data: bytes, **limits) -> Sources:
    return Sources(tmp_path / "sources", ArchiveFiles(data), SourceLimits(**limits))


def leftovers(sources: Sources) -> list[str]:
    return sorted(str(p.relative_to(sources.root)) for p in sources.root.rglob("*"))


@pytest.mark.fast
async def test_a_github_archive_becomes_a_read_only_tree_without_its_top_directory(tmp_path):
    sources = sources_for(
        tmp_path,
        archive(
            entry(f"{TOP}/README.md", b"hello\n"),
            entry(f"{TOP}/bin/", kind=tarfile.DIRTYPE, mode=0o775),
            entry(f"{TOP}/bin/run", b"#!/bin/sh\necho run\n", mode=0o775),
            entry(f"{TOP}/deep/er/file.txt", b"deep"),  # no directory entries before it: made anyway
        ),
    )
    path = Path(await sources.checkout(env_of(), SHA1))
    assert path == tmp_path / "sources" / str(REPO_ID) / SHA1
    assert (path / "README.md").read_text() == "hello\n" and (path / "deep/er/file.txt").read_text() == "deep"
    modes = {str(p.relative_to(path)): p.stat().st_mode & 0o7777 for p in [path, *path.rglob("*")]}
    assert modes == {
        ".": 0o555,
        "README.md": 0o444,
        "bin": 0o555,
        "bin/run": 0o555,
        "deep": 0o555,
        "deep/er": 0o555,
        "deep/er/file.txt": 0o444,
    }
    assert leftovers(sources) == [
        str(REPO_ID),
        f"{REPO_ID}/{SHA1}",
        *(f"{REPO_ID}/{SHA1}/{m}" for m in sorted(modes) if m != "."),
    ]


HOSTILE = {
    "absolute path": (archive(entry("/etc/ghapp-evil", b"x"), top=False), {}, "has an absolute or malformed path"),
    "dot-dot": (archive(entry(f"{TOP}/../../ghapp-evil", b"x")), {}, "has a '..' component"),
    "symlink out": (
        archive(entry(f"{TOP}/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd")),
        {},
        f"'{TOP}/link' is a symbolic link",
    ),
    "symlink then a file through it": (
        archive(entry(f"{TOP}/up", kind=tarfile.SYMTYPE, linkname=".."), entry(f"{TOP}/up/evil", b"x")),
        {},
        f"'{TOP}/up' is a symbolic link",
    ),
    "hardlink out": (
        archive(entry(f"{TOP}/hard", kind=tarfile.LNKTYPE, linkname="/etc/passwd")),
        {},
        f"'{TOP}/hard' is a hard link",
    ),
    "device": (
        archive(entry(f"{TOP}/sda", kind=tarfile.BLKTYPE, devmajor=8, devminor=0)),
        {},
        f"'{TOP}/sda' is a device",
    ),
    "fifo": (archive(entry(f"{TOP}/pipe", kind=tarfile.FIFOTYPE)), {}, f"'{TOP}/pipe' is a fifo"),
    "two top directories": (
        archive(entry(f"{TOP}/a", b"a"), entry("other/b", b"b")),
        {},
        "outside its single top directory",
    ),
    "a name twice": (archive(entry(f"{TOP}/a", b"a"), entry(f"{TOP}/a", b"b")), {}, "names"),
    "not a gzip'd tar": (b"<html>not an archive</html>", {}, "cannot be read as a gzip'd tar"),
    "too many files": (
        archive(*(entry(f"{TOP}/f{i}", b"x") for i in range(6))),
        {"max_files": 5},
        "more than 5 files and directories (GHAPP_SOURCE_MAX_FILES)",
    ),
    "one file too big": (
        archive(entry(f"{TOP}/big", bytes(300_000))),
        {"max_file_bytes": 200_000},
        "has 300000 bytes, more than 200000 (GHAPP_SOURCE_MAX_FILE_BYTES)",
    ),
    # Zeros compress about a thousand times: a few kilobytes of archive, megabytes once extracted.
    "gzip bomb over the byte limit": (
        archive(*(entry(f"{TOP}/zeros{i}", bytes(400_000)) for i in range(3))),
        {"max_bytes": 1_000_000},
        "extracts to more than 1000000 bytes (GHAPP_SOURCE_MAX_BYTES)",
    ),
    "gzip bomb in a header": (
        archive(entry(f"{TOP}/a", b"x", pax_headers={"comment": "x" * 3_000_000})),
        {"max_bytes": 1_000_000, "max_files": 10},
        "decompresses to more than GHAPP_SOURCE_MAX_BYTES allows",
    ),
}


@pytest.mark.fast
@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
async def test_unsafe_archives_are_refused_with_a_clear_error_and_leave_nothing(tmp_path, case):
    data, limits, message = HOSTILE[case]
    sources = sources_for(tmp_path, data, **limits)
    with pytest.raises(UnsafeArchive, match=message.replace("(", r"\(").replace(")", r"\)")):
        await sources.checkout(env_of(), SHA1)
    assert leftovers(sources) == [str(REPO_ID)]  # no tree, no half-extracted directory
    assert not Path("/etc/ghapp-evil").exists() and not (tmp_path / "ghapp-evil").exists()


@pytest.mark.fast
async def test_the_archive_itself_over_the_byte_limit_is_refused(tmp_path):
    noise = os.urandom(50_000)  # does not compress
    sources = sources_for(tmp_path, archive(entry(f"{TOP}/noise", noise)), max_bytes=40_000)
    with pytest.raises(UnsafeArchive, match=r"the archive has \d+ bytes, more than 40000"):
        await sources.checkout(env_of(), SHA1)


@pytest.mark.fast
async def test_a_short_or_offline_sha_is_refused(tmp_path):
    sources = sources_for(tmp_path, archive())
    with pytest.raises(Exception, match="not a full commit SHA"):
        await sources.checkout(env_of(), "ec26c3e")
    offline = Sources(tmp_path / "offline", None)
    with pytest.raises(Exception, match="no access to repositories offline"):
        await offline.checkout(env_of(), SHA1)


async def test_the_tree_is_readable_but_not_writable_by_the_run_user(pg_dir):
    run_user = isolation.run_user()
    assert run_user is not None, "these tests run as root, as CI does: the run user is what they check"
    sources = Sources(
        pg_dir / "sources", ArchiveFiles(archive(entry(f"{TOP}/app/index.html", b"page"))), run_user=run_user
    )
    path = Path(await sources.checkout(env_of(), SHA1))

    def as_run_user(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, **run_user.popen_kwargs())

    assert as_run_user("cat", str(path / "app/index.html")).stdout == "page"
    assert as_run_user("ls", str(path / "app")).stdout == "index.html\n"
    for attempt in (
        ["sh", "-c", f"echo changed > {path}/app/index.html"],
        ["touch", str(path / "app" / "new")],
        ["rm", "-f", str(path / "app" / "index.html")],
        ["chmod", "u+w", str(path / "app" / "index.html")],
        ["mv", str(path / "app"), str(path / "moved")],
    ):
        assert as_run_user(*attempt).returncode != 0, attempt
    assert (path / "app/index.html").read_text() == "page" and sorted(os.listdir(path)) == ["app"]


@pytest.fixture
def sent() -> list[tuple[str, dict]]:
    """(URL, headers) of every request the GitHub client's session sends."""
    return []


@pytest.fixture
async def github_files(fake_github, sent):
    fake_github.add_repo(REPO, REPO_ID)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.add_commit(REPO, {"index.html": "one", "src/app.py": "print(1)\n"}, sha=SHA1)
    fake_github.add_commit(REPO, {"index.html": "two"}, sha=SHA2)

    async def on_request_start(_session, _context, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append((str(params.url), dict(params.headers)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield GitHubRepositoryFiles(
            GitHubApp(session, str(fake_github.app_id), fake_github.private_key_pem, fake_github.base_url)
        )


async def test_the_archive_is_fetched_with_the_token_and_downloaded_without_it(
    tmp_path, fake_github, github_files, sent
):
    await Sources(tmp_path / "sources", github_files).checkout(env_of(), SHA1)
    tarball, download = [(url, headers) for url, headers in sent if "/access_tokens" not in url]
    assert tarball[0] == f"{fake_github.base_url}/repos/{REPO}/tarball/{SHA1}"
    assert tarball[1]["Authorization"] == f"token {fake_github.tokens[-1].token}"
    assert fake_github.tokens[-1].repositories == {REPO}  # narrowed to the one repository
    assert download[0].startswith(f"{fake_github.base_url}/_codeload/{REPO}/legacy.tar.gz/{SHA1}?token=")
    assert "Authorization" not in download[1]


async def test_a_commit_is_fetched_once_however_many_environments_ask_at_once(tmp_path, fake_github, github_files):
    sources = Sources(tmp_path / "sources", github_files)
    envs = [env_of(env_id) for env_id in range(1, 9)]
    paths = await asyncio.gather(*(sources.checkout(env, SHA1) for env in envs))
    assert set(paths) == {str(sources.path(REPO_ID, SHA1))}
    assert fake_github.archive_downloads == 1 and len(fake_github.calls("repos/download-tarball-archive")) == 1
    assert (Path(paths[0]) / "src/app.py").read_text() == "print(1)\n"

    await asyncio.gather(*(sources.checkout(env, sha) for env in envs for sha in (SHA1, SHA2)))
    assert fake_github.archive_downloads == 2  # the second commit, once
    assert (sources.path(REPO_ID, SHA2) / "index.html").read_text() == "two"
    assert not fake_github.violations


async def test_the_archive_download_has_a_size_limit(tmp_path, fake_github, github_files):
    github_files.archive_limit = 100  # the fake's archive is bigger
    sources = Sources(tmp_path / "sources", github_files)
    with pytest.raises(UnsafeArchive, match="more than 100 (bytes )?.*GHAPP_SOURCE_MAX_BYTES"):
        await sources.checkout(env_of(), SHA1)
    assert leftovers(sources) == [str(REPO_ID)]


@pytest.mark.fast
async def test_prune_removes_unneeded_and_unused_trees_only(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "index.html").write_text("hi")
    sources = Sources(tmp_path / "sources", LocalRepositoryFiles(repo))
    for sha in (SHA1, SHA2):
        await sources.checkout(env_of(), sha)
    stale = sources.path(REPO_ID, f"{TEMPORARY}{SHA1}-1-2")
    stale.mkdir()
    assert await sources.prune({(REPO_ID, SHA1)}) == []  # both used just now: kept for the grace period

    an_hour_ago = time.time() - 3601
    for path in (sources.path(REPO_ID, SHA1), sources.path(REPO_ID, SHA2), stale):
        os.utime(path, (an_hour_ago, an_hour_ago))
    removed = await sources.prune({(REPO_ID, SHA1)})
    assert sorted(removed) == sorted([sources.path(REPO_ID, SHA2), stale])
    assert leftovers(sources)[:2] == [str(REPO_ID), f"{REPO_ID}/{SHA1}"]

    assert await sources.prune(set(), grace=0) == [sources.path(REPO_ID, SHA1)]
    assert leftovers(sources) == []  # the repository's directory too, once empty


@pytest.mark.fast
async def test_the_local_repository_reads_files_and_serves_githubs_archive_layout(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".github").mkdir(parents=True)
    (repo / ".github/preview.yml").write_text("source: true\n")
    (repo / "serve.py").write_text("print('hi')\n")
    (repo / "serve.py").chmod(0o755)
    (repo / "link").symlink_to("/etc/passwd")  # left out of the archive, never followed
    files = LocalRepositoryFiles(repo)
    read = await files.read(env_of(), REPO, ".github/preview.yml", None)
    assert read is not None and read.text == "source: true\n"
    assert read.blob_sha == blob_sha(b"source: true\n") == "57ebe95a7a7baae040aaaa6ef31ae8a62215f630"
    assert await files.read(env_of(), REPO, "../repo/serve.py", None) is None
    assert await files.read(env_of(), REPO, "link", None) is None
    sources = Sources(tmp_path / "sources", files)
    path = Path(await sources.checkout(env_of(), SHA1))
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == [".github", ".github/preview.yml", "serve.py"]
    assert (path / "serve.py").stat().st_mode & 0o777 == 0o555


# End to end: the real server, PostgreSQL and terraform/local, the fake GitHub serving the repository.


def with_preview_yml(files: dict) -> dict:
    """A commit's files with the `.github/preview.yml` that asks for its code and serves it with its own command."""
    command = f"exec {sys.executable} -m http.server $PORT --bind 127.0.0.1"
    config = f"version: 1\nsource: true\ninputs:\n  command: {json.dumps(command)}\n"
    return {".github/preview.yml": config, **files}


@pytest.fixture
def start_source_app(settings, aiohttp_client, fake_github, pg_dir):
    """Start the whole app as the GitHub App on the fake GitHub and terraform/local; keyword arguments change the
    settings. Its data dir is where the run user can reach it (not under pytest's
    tmp_path, which another pytest session may close). Kills what a failed test left running."""
    settings = settings.replace(data_dir=pg_dir / "data")
    fake_github.add_repo(REPO, REPO_ID)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.add_pull(REPO, 2, head_sha=SHA1, head_ref="changes", user="Codertocat")
    fake_github.set_permission(REPO, "Codertocat", "admin")

    async def start(**changes):
        app = create_app(
            settings.replace(
                app_id=str(fake_github.app_id),
                private_key=fake_github.private_key_pem,
                github_api_url=fake_github.base_url,
                public_url="https://ghapp.example.com",
                terraform_module=ROOT / "terraform" / "local",
                terraform_env={"TF_VAR_port_base": str(33000 + os.getpid() % 3000), "TF_VAR_python": sys.executable},
                **changes,
            ),
        )
        client = await aiohttp_client(app)
        await wait_for(lambda: _ready(app), what="migrations")
        return app, client

    yield start
    for pid in {*processes_with(str(settings.data_dir)), *processes_in_dir(settings.data_dir)}:
        os.kill(pid, 9)  # a preview a failed test left running


async def post(client, deliveries, action: str, sha: str) -> int:
    body, headers = deliveries.signed("pull_request", deliveries.pull_request(action, sha=sha))
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    return (await resp.json())["environment_id"]


async def deployed(db, env_id: int, sha: str):
    env = await environment(db, env_id)
    assert env["status"] != "failed", env["last_error"]
    return env if env["status"] == "active" and env["deployed_sha"] == sha else None


async def _ready(app):
    return app[keys.READY].is_set()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


async def test_the_preview_serves_the_prs_own_files_at_its_commit_then_at_the_pushed_one(
    start_source_app, deliveries, db, fake_github
):
    app, client = await start_source_app()
    fake_github.add_commit(REPO, with_preview_yml({"index.html": "<p>PR #2 at its first commit</p>\n"}), sha=SHA1)
    fake_github.add_commit(REPO, with_preview_yml({"index.html": "<p>PR #2 after the push</p>\n"}), sha=SHA2)

    env_id = await post(client, deliveries, "opened", SHA1)
    env = await wait_for(lambda: deployed(db, env_id, SHA1), timeout=90, what="the first commit deployed")
    assert fetch(env["preview_url"] + "index.html") == "<p>PR #2 at its first commit</p>\n"
    assert env["config_source"].startswith(".github/preview.yml from the repository at") and env["config_blob_sha"]
    server = processes_in_dir(app[keys.SETTINGS].data_dir)  # the command, in its copy of the code
    run_user = isolation.run_user()
    assert server and run_user and {Path(f"/proc/{pid}").stat().st_uid for pid in server} == {run_user.uid}

    await post(client, deliveries, "synchronize", SHA2)
    env = await wait_for(lambda: deployed(db, env_id, SHA2), timeout=90, what="the pushed commit deployed")
    assert fetch(env["preview_url"] + "index.html") == "<p>PR #2 after the push</p>\n"
    assert fake_github.archive_downloads == 2 and not fake_github.violations

    sources = app[keys.SOURCES]
    assert (sources.path(REPO_ID, SHA2) / "index.html").stat().st_mode & 0o777 == 0o444
    await prune_sources(app[keys.POOL], sources, grace=0)  # the first commit is no one's any more
    assert not sources.path(REPO_ID, SHA1).exists() and sources.path(REPO_ID, SHA2).is_dir()

    await post(client, deliveries, "closed", SHA2)
    await wait_for(
        lambda: _status_is(db, env_id, "destroyed"), timeout=90, what="the preview destroyed when the PR closes"
    )
    with pytest.raises(OSError):
        fetch(env["preview_url"])


async def test_a_refused_archive_fails_the_preview_with_its_reason_until_a_push_fixes_it(
    start_source_app, deliveries, db, fake_github
):
    app, client = await start_source_app(source_max_file_bytes=1000)
    fake_github.add_commit(REPO, with_preview_yml({"index.html": "ok", "video.bin": bytes(5000)}), sha=SHA1)
    fake_github.add_commit(REPO, with_preview_yml({"index.html": "<p>fixed</p>"}), sha=SHA2)

    env_id = await post(client, deliveries, "opened", SHA1)
    env = await wait_for(lambda: _failed(db, env_id), timeout=60, what="the preview failed")
    reason = (
        "the pull request's code at ec26c3e cannot be used: the archive member "
        "'Codertocat-Hello-World-ec26c3e/video.bin' has 5000 bytes, more than 1000 (GHAPP_SOURCE_MAX_FILE_BYTES)"
    )
    assert (env["hold"], env["hold_reason"], env["last_error"]) == ("invalid", reason, reason)
    assert env["attempts"] == 0 and await runs(db, env_id) == []  # not retried, nothing applied
    assert fake_github.archive_downloads == 1

    await post(client, deliveries, "synchronize", SHA2)
    env = await wait_for(lambda: deployed(db, env_id, SHA2), timeout=90, what="the fixed commit deployed")
    assert fetch(env["preview_url"]) == "<p>fixed</p>"
    await post(client, deliveries, "closed", SHA2)
    await wait_for(lambda: _status_is(db, env_id, "destroyed"), timeout=90, what="the preview destroyed")


async def _failed(db, env_id: int):
    env = await environment(db, env_id)
    return env if env["status"] == "failed" else None


async def _status_is(db, env_id: int, status: str) -> bool:
    return (await environment(db, env_id))["status"] == status
