"""`.github/preview.yml` end to end: the real server, PostgreSQL and Terraform with the strict fake GitHub serving
the files. A catalog module gets the file's inputs (the organisation's defaults under the repository's); a fork is
deployed with its base branch's file; an invalid file fails the check run with its line and applies nothing, and
the push that fixes it deploys. The reader on its own: 404s, conditional requests, the organisation's token."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest

from ghapp.core.contract import Access
from ghapp.core.repoconfig import PATH, FileTooLarge
from ghapp.github.client import GitHubApp
from ghapp.github.repository import GitHubRepositoryFiles
from tests.support import fake_sha, wait_for
from tests.test_github_app import (  # noqa: F401 - fixtures
    INSTALLATION,
    REPO,
    REPO_ID,
    SHA,
    as_github_app,
    github,
    post,
    published,
)
from tests.test_policy import environment as make_environment

MODULES = Path(__file__).parent / "modules"  # the catalog: `module: inputs` is tests/modules/inputs
ORG_REPO = "Codertocat/.github"
CONFIG = """\
version: 1
module: inputs
inputs:
  greeting: hello from the repository
  debug: true
  hosts: [a.example, b.example]
  limits: {cpu: 500m}
"""


@pytest.fixture
def start_app(start_app, github):
    return as_github_app(start_app, github, modules_dir=MODULES)


async def settled(db, env_id: int, status: str, sha: str | None = None):
    env = await published(db, env_id)
    if env is None or env["status"] != status or (sha and env["head_sha"] != sha):
        return None
    return env


def check_run(github, sha: str) -> dict:
    (run,) = [r for r in github.check_runs(REPO) if r["head_sha"] == sha]
    return run


async def test_a_catalog_module_gets_the_files_inputs_over_the_organisations(
    start_app, deliveries, db, github, tmp_path
):
    github.add_repo(ORG_REPO)
    github.installations[INSTALLATION].repositories.append(ORG_REPO)
    github.add_commit(
        ORG_REPO, {PATH: "inputs: {greeting: from the organization, replicas: 3}\nttl: 24h\n"}, branch="main"
    )
    github.add_commit(REPO, {PATH: CONFIG, "README.md": "hi"}, sha=SHA)
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed with the catalog module")

    assert json.loads(env["outputs"])["echo"] == json.dumps(
        {
            "debug": True,
            "git_sha": SHA,
            "greeting": "hello from the repository",
            "hosts": ["a.example", "b.example"],
            "limits": {"cpu": "500m"},
            "replicas": 3,
        },
        separators=(",", ":"),
    )
    assert env["module"] == str(MODULES / "inputs")
    assert env["config_source"].startswith(f".github/preview.yml from the repository at {SHA}")
    assert json.loads(env["config"])["ttl"] == 24 * 3600  # the organisation's key the repository does not set
    (run_row,) = await db.fetch("SELECT config_source, config_blob_sha FROM runs WHERE environment_id = $1", env_id)
    assert run_row["config_blob_sha"] == env["config_blob_sha"] is not None

    # the organisation's file was read with a token narrowed to its repository, by name; content is read with
    # tokens of their own
    readers = [t for t in github.tokens if t.permissions == {"contents": "read", "metadata": "read"}]
    assert sorted(sorted(t.repositories or ()) for t in readers) == [[ORG_REPO], [REPO]]
    assert all("contents" not in t.permissions for t in github.tokens if t not in readers)

    summary = check_run(github, SHA)["output"]["summary"]
    assert "| `api` | http://api-" in summary and "| `web` | http://" in summary
    assert "| `<b>docs</b>` | `javascript:alert(1)` (not an http(s) URL, so not linked) |" in summary
    assert "Configuration: `.github/preview.yml from the repository" in summary
    body = github.comments(REPO, 2)[0]["body"]
    assert "| `api` | http://api-" in body and "| `<b>docs</b>` | `javascript:alert(1)` (not" in body
    api = await (await client.get(f"/api/environments/{env_id}")).json()
    assert api["preview_urls"] == {
        "<b>docs</b>": "javascript:alert(1)",
        "api": f"http://api-{env['name']}.preview.test/",
        "web": f"http://{env['name']}.preview.test/",
    }
    page = await (await client.get(f"/environments/{env_id}")).text()
    assert f'<a href="http://api-{env["name"]}.preview.test/">' in page
    assert "<code>&lt;b&gt;docs&lt;/b&gt;</code>" in page and 'href="javascript' not in page
    assert "from the repository at" in page

    # closed: destroyed with the module it was applied with (the catalog's work dir), whose workspace goes
    state = tmp_path / "data" / "terraform" / "catalog" / "inputs" / "terraform.tfstate.d" / env["name"]
    assert (state / "terraform.tfstate").is_file()
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    await wait_for(lambda: settled(db, env_id, "destroyed"), what="destroyed")
    assert await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = $1 AND action = 'destroy'", env_id) == 1
    assert not state.exists()


async def test_a_fork_is_deployed_with_its_base_branchs_file(start_app, deliveries, db, github):
    base = CONFIG.replace("hello from the repository", "from the base branch")
    github.add_commit(REPO, {PATH: base}, branch="main")
    github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="contributor", fork=True)
    # what the fork's own commit says: never read
    github.add_commit(REPO, {PATH: CONFIG.replace("hello from the repository", "from the fork")}, sha=SHA)
    client = await start_app(allow_forks=True)
    data = deliveries.pull_request("opened", fork=True)
    data["pull_request"]["base"]["ref"] = "main"  # the base branch the fake repository has (the payload says master)
    env_id = (await post(client, deliveries, "pull_request", data))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "active"), what="the fork deployed")
    assert json.loads(json.loads(env["outputs"])["echo"])["greeting"] == "from the base branch"
    assert env["config_source"].startswith(".github/preview.yml from the repository at main")


async def test_a_fork_may_not_use_a_module_from_its_repository(start_app, deliveries, db, github):
    github.add_commit(REPO, {PATH: "version: 1\nmodule: {path: infra}\n"}, branch="main")
    github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="contributor", fork=True)
    client = await start_app(allow_forks=True, repo_modules=("Codertocat/*",))
    data = deliveries.pull_request("opened", fork=True)
    data["pull_request"]["base"]["ref"] = "main"  # the base branch the fake repository has (the payload says master)
    env_id = (await post(client, deliveries, "pull_request", data))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "failed"), what="refused")
    assert env["hold"] == "invalid"
    assert env["hold_reason"] == (
        "line 2: module: {path: ...} is not allowed: a pull request from a fork cannot use a module from its repository"
    )
    assert await db.fetchval("SELECT count(*) FROM runs") == 0


async def test_an_invalid_file_fails_the_check_run_with_its_line_and_a_fixing_push_deploys(
    start_app, deliveries, db, github
):
    github.add_commit(REPO, {PATH: "version: 1\nmodule: inputs\ndeplyo: manual\n"}, sha=SHA)
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "failed"), what="the invalid file reported")
    assert (env["hold"], env["hold_reason"]) == ("invalid", "line 3: unknown key 'deplyo' (did you mean 'deploy'?)")
    assert await db.fetchval("SELECT count(*) FROM runs") == 0  # nothing applied
    run = check_run(github, SHA)
    assert (run["status"], run["conclusion"], run["output"]["title"]) == (
        "completed",
        "failure",
        "Invalid .github/preview.yml",
    )
    assert "`line 3: unknown key 'deplyo' (did you mean 'deploy'?)`" in run["output"]["summary"]
    (comment,) = github.comments(REPO, 2)
    assert "**Invalid `.github/preview.yml`**: `line 3: unknown key 'deplyo'" in comment["body"]

    fixed = fake_sha("fixed")
    github.add_commit(REPO, {PATH: CONFIG}, sha=fixed)
    github.add_pull(REPO, 2, head_sha=fixed, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fixed))
    env = await wait_for(lambda: settled(db, env_id, "active", fixed), what="the fixed commit deployed")
    assert env["deployed_sha"] == fixed and env["hold"] is None
    assert check_run(github, fixed)["conclusion"] == "success"
    assert "Invalid" not in github.comments(REPO, 2)[0]["body"]


async def test_a_pull_request_cannot_open_its_own_preview_to_the_world(start_app, deliveries, db, github):
    """A same-repository pull request's file is read at its head, which its author wrote: `access: public` there
    takes effect once merged. Until the base branch says so, the preview keeps the operator's `repository`, and the
    pull request is told why."""
    github.add_commit(REPO, {PATH: "version: 1\n"}, branch="main")  # the maintainers' file says nothing of access
    github.add_commit(REPO, {PATH: "version: 1\naccess: public\n"}, sha=SHA)
    client = await start_app(access=Access.REPOSITORY)
    opened = deliveries.pull_request("opened")
    opened["pull_request"]["base"]["ref"] = "main"  # the base branch the fake repository has (the payload: master)
    env_id = (await post(client, deliveries, "pull_request", opened))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed")
    assert env["access"] is None, "the operator's default (repository) stands: the head's `public` is refused"
    refused = "access: public in this pull request takes effect once merged (until then: repository)"
    assert env["config_source"].endswith(f"; {refused}")
    assert refused in github.comments(REPO, 2)[0]["body"]

    # merged: the base branch says `public`; the pull request's next push gets it
    github.add_commit(REPO, {PATH: "version: 1\naccess: public\n"}, branch="main")
    pushed = fake_sha("pushed")
    github.add_commit(REPO, {PATH: "version: 1\naccess: public\n", "README.md": "more"}, sha=pushed)
    github.add_pull(REPO, 2, head_sha=pushed, head_ref="changes", user="Codertocat")
    synchronized = deliveries.pull_request("synchronize", sha=pushed)
    synchronized["pull_request"]["base"]["ref"] = "main"
    await post(client, deliveries, "pull_request", synchronized)
    env = await wait_for(lambda: settled(db, env_id, "active", pushed), what="the push deployed")
    assert env["access"] == "public" and "takes effect" not in env["config_source"]
    assert "takes effect" not in github.comments(REPO, 2)[0]["body"]


async def test_a_pull_request_cannot_set_the_operators_platform_inputs(start_app, deliveries, db, github):
    # Attacked on 2026-12-01: the kubernetes module's platform settings (pod security, network policy, routing,
    # ingress annotations, ...) have defaults, so without this refusal a pull request's file chose them.
    config = "version: 1\nmodule: inputs\ninputs:\n  pod_security_enforce: privileged\n  greeting: hi\n"
    github.add_commit(REPO, {PATH: config}, sha=SHA)
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "failed"), what="the platform input refused")
    assert env["hold"] == "invalid"
    assert env["hold_reason"].startswith("line 4: input 'pod_security_enforce' is a platform setting")
    assert await db.fetchval("SELECT count(*) FROM runs") == 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('  greeting: "a\\0b"\n', "line 4: input 'greeting' holds a NUL character"),
        ("  greeting: hi\n  n: 0x" + "f" * 4000 + "\n", "line 5: input 'n' is a number too large"),
        (
            "  greeting: hi\nmax_previews: 3000000000\n",
            "line 5: max_previews: 3000000000 is greater than the maximum of 10000",
        ),
        ("  greeting: hi\nttl: 99999999999d\n", "line 5: ttl is longer than 366 days"),
        ('  greeting: hi\npaths: ["a\\0"]\n', "line 5: paths holds a NUL character"),
    ],
)
async def test_values_no_environment_variable_or_database_can_hold_are_refused_at_their_line(
    start_app, deliveries, db, github, text, reason
):
    # Attacked on 2026-12-01: a NUL in a string, or an integer of thousands of digits (hex or binary, which
    # Python reads past its 4300-digit limit for decimals), passed validation and broke later: the NUL in
    # Terraform's environment, the huge number when encoded or stored.
    github.add_commit(REPO, {PATH: "version: 1\nmodule: inputs\ninputs:\n" + text}, sha=SHA)
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "failed"), what="the value refused")
    assert env["hold"] == "invalid" and env["hold_reason"].startswith(reason), env["hold_reason"]
    assert await db.fetchval("SELECT count(*) FROM runs") == 0


# --- the reader on its own -----------------------------------------------------------------------------------------


@pytest.fixture
async def files(github):
    async with aiohttp.ClientSession() as session:
        yield GitHubRepositoryFiles(GitHubApp(session, str(github.app_id), github.private_key_pem, github.base_url))


ENV = make_environment(repository=REPO, repo_id=REPO_ID, installation_id=INSTALLATION, is_fork=False)


async def test_reading_a_file_by_ref_with_conditional_requests(files, github):
    text = "version: 1\ninputs: {greeting: caf\u00e9}\n"
    head = github.add_commit(REPO, {PATH: text}, sha=fake_sha("read"))
    first = await files.read(ENV, REPO, PATH, head)
    assert first is not None and first.text == text and first.raw == text.encode()
    again = await files.read(ENV, REPO, PATH, head)
    assert again == first
    assert github.not_modified_counts().get("repos/get-content") == 1  # the second read cost no rate limit
    assert await files.read(ENV, REPO, PATH, None) is None  # no default branch content: 404 is "no file"
    assert await files.read(ENV, REPO, ".github", head) is None  # a directory is not a file
    # a repository the installation cannot read (the organisation has no .github repository): no file
    assert await files.read(ENV, ORG_REPO, PATH, None) is None
    # an environment without an installation (offline): no file
    assert await files.read(dataclasses.replace(ENV, installation_id=None), REPO, PATH, head) is None


async def test_an_installation_that_has_not_granted_contents_reads_no_file(files, github, caplog):
    """Installed before ghapp read content: its owner has not accepted `contents: read` yet. Previews go on with
    the operator's defaults (and reporting, with its own token, is unaffected)."""
    github.installations[INSTALLATION].permissions.pop("contents")
    head = github.add_commit(REPO, {PATH: "version: 1\n"}, sha=fake_sha("granted"))
    assert await files.read(ENV, REPO, PATH, head) is None
    assert "has not granted `contents: read`" in caplog.text
    assert await files.app.token(INSTALLATION, REPO_ID)  # the reporting token is still given


async def test_bytes_come_back_exactly_and_a_huge_file_is_refused(files, github):
    latin1 = "inputs: {greeting: caf\u00e9}\n".encode("latin-1")
    head = github.add_commit(REPO, {PATH: latin1}, sha=fake_sha("latin1"))
    found = await files.read(ENV, REPO, PATH, head)
    assert found is not None and found.raw == latin1
    huge = github.add_commit(REPO, {PATH: b"#" * (1024 * 1024 + 1)}, sha=fake_sha("huge"))
    with pytest.raises(FileTooLarge) as caught:
        await files.read(ENV, REPO, PATH, huge)
    assert caught.value.size == 1024 * 1024 + 1


async def test_a_new_module_first_destroys_what_the_old_one_made(start_app, deliveries, db, github, tmp_path):
    client = await start_app()
    env_id = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    env = await wait_for(lambda: settled(db, env_id, "active"), what="deployed with the operator's module")
    assert env["module"] is None
    old_state = tmp_path / "data" / "terraform" / "scripted" / "terraform.tfstate.d" / env["name"]
    assert (old_state / "terraform.tfstate").is_file()

    pushed = fake_sha("module")
    github.add_commit(REPO, {PATH: CONFIG}, sha=pushed)
    github.add_pull(REPO, 2, head_sha=pushed, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=pushed))
    env = await wait_for(lambda: settled(db, env_id, "active", pushed), what="deployed with the catalog module")
    assert env["module"] == str(MODULES / "inputs") and env["deployed_sha"] == pushed
    runs = await db.fetch("SELECT action, sha, state, error FROM runs WHERE environment_id = $1 ORDER BY id", env_id)
    assert [(r["action"], r["sha"], r["state"]) for r in runs] == [
        ("apply", SHA, "succeeded"),
        ("destroy", SHA, "succeeded"),
        ("apply", pushed, "succeeded"),
    ]
    assert not old_state.exists()  # the operator's module's resources and workspace are gone
