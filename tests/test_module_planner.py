"""The module planner and the configuration reader against local directories: catalog names, a repository's own
module (allowed repositories only, never a fork, never outside the checkout), `source: true`, offline defaults."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from ghapp.config import Settings
from ghapp.core.contract import Access, Hold
from ghapp.core.repoconfig import PATH, ConfigOrigin, Held, Plan, RepoConfig, RepositoryFile
from ghapp.workers.configuration import ModulePlanner, RepositoryConfiguration
from tests.test_policy import environment as make_environment

pytestmark = pytest.mark.fast

SHA = "a" * 40
ENV = make_environment(repository="acme/web", desired_sha=SHA, is_fork=False)
ORIGIN = ConfigOrigin("repository", "b" * 40, SHA)


class Checkouts:
    """A checkout of the commit: a directory per SHA under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.asked: list[str] = []

    async def checkout(self, env, sha: str) -> str:
        self.asked.append(sha)
        return str(self.root / sha)


@pytest.fixture
def catalog(tmp_path) -> Path:
    for name in ("kubernetes", "local"):
        (tmp_path / "catalog" / name).mkdir(parents=True)
    return tmp_path / "catalog"


@pytest.fixture
def checkouts(tmp_path) -> Checkouts:
    (tmp_path / "src" / SHA / "infra" / "preview").mkdir(parents=True)
    (tmp_path / "src" / SHA / "README.md").write_text("hi")
    os.symlink("/etc", tmp_path / "src" / SHA / "escape")
    return Checkouts(tmp_path / "src")


def planner(catalog: Path, checkouts: Checkouts | None, **settings) -> ModulePlanner:
    return ModulePlanner(Settings(modules_dir=catalog, **settings), checkouts)


async def test_a_catalog_module_and_encoded_inputs(catalog, checkouts):
    config = RepoConfig(module="kubernetes", inputs={"replicas": 2, "image": "ghcr.io/acme/web", "flags": [True]})
    plan = await planner(catalog, checkouts).plan(ENV, config, ORIGIN)
    assert plan == Plan(
        config=config,
        origin=ORIGIN,
        module=str(catalog / "kubernetes"),
        tf_vars={"replicas": "2", "image": "ghcr.io/acme/web", "flags": "[true]"},
    )
    assert checkouts.asked == []  # nothing checked out when nothing needs the code


async def test_without_a_file_the_operators_module(catalog):
    assert await planner(catalog, None).plan(ENV, RepoConfig(), ConfigOrigin()) == Plan()


@pytest.mark.parametrize("name", ["nomad", "..", "kubernetes/../local"])
async def test_a_name_outside_the_catalog_is_invalid(catalog, checkouts, name):
    held = await planner(catalog, checkouts).plan(ENV, RepoConfig(module=name), ORIGIN)
    assert isinstance(held, Held) and held.hold is Hold.INVALID and "not in the operator's catalog" in held.reason


async def test_a_repositorys_own_module_and_source(catalog, checkouts):
    config = RepoConfig(module_path="infra/preview", source=True)
    plan = await planner(catalog, checkouts, repo_modules=("acme/*",)).plan(ENV, config, ORIGIN)
    assert isinstance(plan, Plan)
    assert plan.module == str((checkouts.root / SHA / "infra" / "preview").resolve())
    assert plan.source_dir == str(checkouts.root / SHA)
    assert checkouts.asked == [SHA]


async def test_source_alone_sets_the_source_dir(catalog, checkouts):
    plan = await planner(catalog, checkouts).plan(ENV, RepoConfig(source=True), ORIGIN)
    assert isinstance(plan, Plan) and plan.module is None and plan.source_dir == str(checkouts.root / SHA)


@pytest.mark.parametrize(
    ("env", "path", "allowed", "reason"),
    [
        (ENV, "infra/preview", (), "not allowed: this ghapp does not allow modules from this repository"),
        (ENV, "infra/preview", ("other/*",), "GHAPP_REPO_MODULES"),
        (dataclasses.replace(ENV, is_fork=True), "infra/preview", ("acme/*",), "a pull request from a fork cannot"),
        (ENV, "escape", ("acme/web",), "module path 'escape' leaves the repository"),
        (ENV, "../..", ("acme/web",), "leaves the repository"),
        (ENV, "README.md", ("acme/web",), "is not a directory"),
        (ENV, "missing", ("acme/web",), "is not a directory"),
    ],
)
async def test_a_repositorys_module_is_refused(catalog, checkouts, env, path, allowed, reason):
    held = await planner(catalog, checkouts, repo_modules=allowed).plan(env, RepoConfig(module_path=path), ORIGIN)
    assert isinstance(held, Held) and held.hold is Hold.INVALID, held
    assert reason in held.reason


async def test_the_code_is_needed_but_cannot_be_checked_out(catalog):
    held = await planner(catalog, None).plan(ENV, RepoConfig(source=True), ORIGIN)
    assert (
        isinstance(held, Held)
        and held.reason == "source: true needs the commit's code, and this ghapp cannot check out the commit"
    )


class Files:
    """`RepositoryFiles` from a dict: (repository, ref) → text."""

    def __init__(self, files: dict[tuple[str, str | None], str]) -> None:
        self.files = files
        self.reads: list[tuple[str, str | None]] = []

    async def read(self, env, repository, path, ref):
        assert path == PATH
        self.reads.append((repository, ref))
        text = self.files.get((repository, ref))
        return None if text is None else RepositoryFile(text, f"{len(text):040x}")

    async def tarball(self, env, sha, destination):
        raise NotImplementedError


def reader(files: Files | None, catalog: Path, **settings) -> RepositoryConfiguration:
    return RepositoryConfiguration(Settings(modules_dir=catalog, **settings), files)


async def test_offline_the_operators_defaults(catalog):
    assert await reader(None, catalog).read(ENV) == (RepoConfig(), ConfigOrigin())
    files = Files({})
    assert await reader(files, catalog).read(ENV) == (RepoConfig(), ConfigOrigin())
    # the base branch too (here: the default branch): what it says of `access` bounds the head's
    assert files.reads == [("acme/.github", None), ("acme/web", SHA), ("acme/web", None)]


@pytest.mark.parametrize(
    ("organization", "base", "head", "access", "note"),
    [
        (None, None, "access: public\n", None, "until then: repository"),
        (None, "access: repository\n", "access: public\n", Access.REPOSITORY, "until then: repository"),
        (None, "access: repository\n", "version: 1\n", Access.REPOSITORY, None),  # dropping the key
        (None, "access: repository\n", None, Access.REPOSITORY, None),  # dropping the file
        # dropping the file: the organisation's `public` would apply once merged, not before
        ("access: public\n", "access: repository\n", None, Access.REPOSITORY, "until then: repository"),
        ("access: public\n", None, None, Access.PUBLIC, None),  # the organisation's word is the maintainers'
        (None, "access: public\n", "access: public\n", Access.PUBLIC, None),
        (None, "access: [broken\n", "access: public\n", None, "until then: repository"),
    ],
)
async def test_a_same_repository_pull_requests_access_is_bounded_by_the_base_branch(
    catalog, organization, base, head, access, note
):
    files = Files(
        {
            key: text
            for key, text in {
                ("acme/.github", None): organization,
                ("acme/web", "main"): base,
                ("acme/web", SHA): head,
            }.items()
            if text is not None
        }
    )
    env = dataclasses.replace(ENV, base_ref="main")
    config, origin = await reader(files, catalog, access=Access.REPOSITORY).read(env)
    assert config.access is access
    assert (origin.note or None) == (note and f"access: public in this pull request takes effect once merged ({note})")


async def test_the_head_asking_for_repository_needs_no_base_branch(catalog):
    files = Files({("acme/web", SHA): "access: repository\n"})
    config, _origin = await reader(files, catalog).read(dataclasses.replace(ENV, base_ref="main"))
    assert config.access is Access.REPOSITORY
    assert ("acme/web", "main") not in files.reads


async def test_the_organisations_defaults_alone(catalog):
    files = Files({("acme/.github", None): "module: local\nttl: 24h\n"})
    config, origin = await reader(files, catalog).read(ENV)
    assert (config.module, config.ttl) == ("local", 86400.0)
    assert (origin.kind, origin.ref) == ("organization", "the default branch")


async def test_the_module_is_checked_where_it_is_decided(catalog):
    files = Files({("acme/.github", None): "module: {path: infra}\n", ("acme/web", SHA): "module: local\n"})
    config, _origin = await reader(files, catalog).read(ENV)
    assert config.module == "local" and config.module_path is None
    alone = Files({("acme/.github", None): "\nmodule: {path: infra}\n"})
    held = await reader(alone, catalog).read(ENV)
    assert isinstance(held, Held) and held.reason.startswith("acme/.github: line 2: module: {path: ...} is not allowed")


async def test_a_fork_reads_its_base_branch(catalog):
    fork = dataclasses.replace(ENV, is_fork=True, base_ref="release")
    files = Files({("acme/web", "release"): "module: kubernetes\n"})
    config, origin = await reader(files, catalog).read(fork)
    assert config.module == "kubernetes" and origin.ref == "release"
    assert ("acme/web", SHA) not in files.reads


async def test_the_organisations_own_dot_github_is_read_once(catalog):
    env = dataclasses.replace(ENV, repository="acme/.github")
    files = Files({("acme/.github", SHA): "module: local\n"})
    config, origin = await reader(files, catalog).read(env)
    assert config.module == "local" and origin.kind == "repository"
    assert files.reads == [("acme/.github", SHA), ("acme/.github", None)]  # its head, then its base for `access`


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (
            {("acme/web", SHA): "version: 1\n\ndeplyo: manual\n"},
            "line 3: unknown key 'deplyo' (did you mean 'deploy'?)",
        ),
        (
            {("acme/web", SHA): "module: kubernets\n"},
            "line 1: module 'kubernets' is not in the operator's catalog (did you mean 'kubernetes'?)",
        ),
        (
            {("acme/web", SHA): "module: {path: infra}\n"},
            "line 1: module: {path: ...} is not allowed: this ghapp does not allow",
        ),
        (
            {("acme/.github", None): "ttl: soon\n", ("acme/web", SHA): "module: local\n"},
            "acme/.github: line 1: ttl: 'soon' is not a duration",
        ),
    ],
)
async def test_an_invalid_file_is_held_with_its_line(catalog, files, reason):
    held = await reader(Files(files), catalog).read(ENV)
    assert isinstance(held, Held) and held.hold is Hold.INVALID
    assert held.reason.startswith(reason), held.reason
