"""Secrets stay secret: a full lifecycle against the strict fake GitHub with recognisable secret values (webhook
secret, the App's private key, the installation tokens GitHub issues, the admin token, a database password),
then a search for every one of them in the logs, every table, the Terraform state and work files, the run logs,
the environment of Terraform's processes, what the app sent to GitHub and served over HTTP, and repr(settings)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import urllib.parse
import uuid
from pathlib import Path

import asyncpg
import pytest

from ghapp.config import Settings
from ghapp.terraform import WITHHELD
from ghapp.web import keys
from ghapp.web.app import create_app
from tests.support import ROOT, Deliveries, environment, fake_sha, wait_for
from tests.test_state_role import dump_dir

ENVDUMP_MODULE = ROOT / "tests" / "modules" / "envdump"
REPO = "Codertocat/Hello-World"
REPO_ID = 186853002
INSTALLATION = 1
SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


@pytest.fixture
async def password_database_url(database_url):
    """(URL, password): the test database reached as a role with a recognisable password; (URL, None) where the
    server lets us create no role."""
    role, password = f"ghapp_secret_{uuid.uuid4().hex[:8]}", f"SECRET-DB-{uuid.uuid4()}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'GRANT ALL ON DATABASE "{name}" TO {role}; GRANT ALL ON SCHEMA public TO {role}')
    except asyncpg.exceptions.InsufficientPrivilegeError:
        password = None
    finally:
        await admin.close()
    if password is None:
        yield database_url, None
        return
    parts = urllib.parse.urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]  # empty for a socket URL (`?host=/dir`): credentials go in front anyway
    yield urllib.parse.urlunsplit(parts._replace(netloc=f"{role}:{urllib.parse.quote(password)}@{host}")), password
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


@pytest.fixture
def github(fake_github):
    fake_github.add_repo(REPO, REPO_ID)
    fake_github.add_installation(INSTALLATION, "Codertocat", [REPO])
    fake_github.add_pull(REPO, 2, head_sha=SHA, head_ref="changes", user="Codertocat")
    fake_github.add_pull(REPO, 3, head_sha=fake_sha(3), head_ref="broken", user="Codertocat")
    fake_github.set_permission(REPO, "Codertocat", "admin")
    return fake_github


def needles(named: dict[str, str | None]) -> dict[str, str]:
    """What to look for: each secret as is and URL-encoded."""
    found = {}
    for name, value in named.items():
        if value:
            found[name] = value
            if (quoted := urllib.parse.quote(value, safe="")) != value:
                found[f"{name} (URL-encoded)"] = quoted
    return found


def key_needles(pem: str) -> dict[str, str]:
    """The private key: its whole PEM, its header line, and every line of its base64 body."""
    body = [line for line in pem.strip().splitlines() if line and not line.startswith("-----")]
    assert len(body) > 20, "a 2048-bit key has about 25 base64 lines"
    return {
        "private key PEM": pem.strip(),
        "private key header": "PRIVATE KEY-----",
        **{f"private key line {i}": line for i, line in enumerate(body)},
    }


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


async def all_tables_as_text(db) -> dict[str, str]:
    """Every row of every table of the database (outside PostgreSQL's own schemas), each row as text."""
    tables = await db.fetch(
        """SELECT table_schema, table_name FROM information_schema.tables
           WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"""
    )
    dump = {}
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        dump[name] = await db.fetchval(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {name} t")
    return dump


def comment_on_pr(deliveries: Deliveries, github, body: str) -> dict:
    """`issue_comment.created` (whose real example is on an issue) moved onto PR #2 by its admin, who commented it
    on the fake GitHub too."""
    data = copy.deepcopy(deliveries.payload("issue_comment.created"))
    data["comment"]["id"] = github.add_comment(REPO, 2, body, user="Codertocat")["id"]
    data["issue"]["number"] = 2
    data["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/2"}
    data["comment"]["body"] = body
    data["installation"] = {"id": INSTALLATION, "node_id": "x"}
    return data


async def post(client, deliveries: Deliveries, event: str, data: dict) -> dict:
    body, headers = deliveries.signed(event, data)
    resp = await client.post("/webhooks", data=body, headers=headers)
    assert resp.status in (200, 202), await resp.text()
    return await resp.json()


async def settled(db, env_id: int, status: str, generation: int = 0):
    """The environment at `status` for good (converged at `generation` or later, or failed with no retry left),
    and published to GitHub."""
    env = await environment(db, env_id)
    if (
        not env
        or env["status"] != status
        or env["generation"] < generation
        or env["published_version"] != env["version"]
    ):
        return None
    done = env["next_attempt_at"] is None if status == "failed" else env["observed_generation"] == env["generation"]
    return env if done else None


async def test_no_secret_in_logs_database_state_or_terraform_environment(
    password_database_url, settings, aiohttp_client, github, db, caplog, capfd, tmp_path, monkeypatch, pg_dir
):
    caplog.set_level(logging.DEBUG)  # every logger, the aiohttp access log included
    database_url, db_password = password_database_url
    webhook_secret, admin_token = f"SECRET-WEBHOOK-{uuid.uuid4()}", f"SECRET-ADMIN-{uuid.uuid4()}"
    # Configured as in production: from the environment, which Terraform's processes inherit minus WITHHELD.
    for name, value in {
        "GITHUB_APP_ID": str(github.app_id),
        "GITHUB_PRIVATE_KEY": github.private_key_pem,
        "GITHUB_WEBHOOK_SECRET": webhook_secret,
        "GHAPP_ADMIN_TOKEN": admin_token,
        "DATABASE_URL": database_url,
        "GITHUB_API_URL": github.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    configured = Settings.from_env(dotenv=None)
    assert (configured.webhook_secret, configured.admin_token, configured.database_url) == (
        webhook_secret,
        admin_token,
        database_url,
    )
    dumps, marker = dump_dir(pg_dir), tmp_path / "fail"  # as root, Terraform runs as ghapp-run: it must write there
    app_settings = settings.replace(
        app_id=configured.app_id,
        private_key=configured.private_key,
        webhook_secret=configured.webhook_secret,
        admin_token=configured.admin_token,
        database_url=configured.database_url,
        github_api_url=configured.github_api_url,
        public_url="https://ghapp.example.com",
        terraform_module=ENVDUMP_MODULE,
        max_attempts=1,
        terraform_env={"TF_VAR_env_dump_dir": str(dumps), "TF_VAR_fail_marker": str(marker)},
    )
    deliveries = Deliveries(webhook_secret)
    app = create_app(app_settings)
    client = await aiohttp_client(app)
    await wait_for(lambda: _ready(app), what="migrations")
    served: list[str] = []
    files: dict[tuple[Path, str], str] = {}  # the data dir's files as they were at each step (state goes on destroy)

    # a failing run: PR #3 while the marker exists (max_attempts=1: failed for good)
    marker.touch()
    env3 = (
        await post(client, deliveries, "pull_request", deliveries.pull_request("opened", number=3, sha=fake_sha(3)))
    )["environment_id"]
    await wait_for(lambda: settled(db, env3, "failed"), timeout=60, what="PR #3 failed and published")
    keep(files, app_settings.data_dir)
    marker.unlink()

    # PR #2: opened → active → pushed to → active → redeployed by command → closed → destroyed
    env2 = (await post(client, deliveries, "pull_request", deliveries.pull_request("opened")))["environment_id"]
    await wait_for(lambda: settled(db, env2, "active"), timeout=60, what="PR #2 active")
    keep(files, app_settings.data_dir)
    new = fake_sha("push")
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat")
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=new))
    env = await wait_for(lambda: _deployed(db, env2, new), timeout=60, what="the push deployed")
    keep(files, app_settings.data_dir)
    reply = await post(client, deliveries, "issue_comment", comment_on_pr(deliveries, github, "/preview redeploy"))
    assert reply["command"] == "redeploy", reply
    await wait_for(lambda: settled(db, env2, "active", env["generation"] + 1), timeout=60, what="redeployed")
    keep(files, app_settings.data_dir)
    github.add_pull(REPO, 2, head_sha=new, head_ref="changes", user="Codertocat", state="closed")
    await post(client, deliveries, "pull_request", deliveries.pull_request("closed", sha=new))
    await wait_for(lambda: settled(db, env2, "destroyed"), timeout=60, what="PR #2 destroyed")
    keep(files, app_settings.data_dir)

    # an operator: signs in, looks around, force-destroys PR #3 through the API with the admin token
    resp = await client.post("/login", data={"token": admin_token, "next": "/"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    for path in ("/", f"/environments/{env3}", f"/environments/{env2}", f"/api/environments/{env2}", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 200, path
        served.append(await resp.text())
    run_ids = [r["id"] for r in await db.fetch("SELECT id FROM runs ORDER BY id")]
    for run_id in run_ids:
        served.append(await (await client.get(f"/api/runs/{run_id}/log")).text())
    resp = await client.post(f"/api/environments/{env3}/destroy", headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status == 202, await resp.text()
    served.append(await resp.text())
    await wait_for(lambda: settled(db, env3, "destroyed"), timeout=60, what="PR #3 destroyed by the operator")

    # What to look for: everything above, and every installation token GitHub issued.
    tokens = [t.token for t in github.tokens]
    assert tokens, "the app never got an installation token"
    secrets = {
        **needles({"webhook secret": webhook_secret, "admin token": admin_token, "database password": db_password}),
        **key_needles(github.private_key_pem),
        **{f"installation token {i}": token for i, token in enumerate(tokens)},
    }

    # the logs: every record of every logger, the access log and tracebacks included; and stdout/stderr
    assert any(r.name == "aiohttp.access" for r in caplog.records), "the access log was not captured"
    assert any(r.name.startswith("ghapp") for r in caplog.records), "the app's log was not captured"
    out, err = capfd.readouterr()
    for where, text in {"the log": caplog.text, "stdout": out, "stderr": err}.items():
        assert not leaked(text, secrets), f"{where} holds {leaked(text, secrets)}"

    # every table, every row
    tables = await all_tables_as_text(db)
    assert await db.fetchval("SELECT count(*) FROM run_logs") > 0, "no run log to search"
    assert await db.fetchval("SELECT count(*) FROM runs") == 6, "apply×4 (one failed) and destroy×2"
    for table, text in tables.items():
        assert not leaked(text, secrets), f"table {table} holds {leaked(text, secrets)}"

    # the data dir: Terraform state, the module copy, CLI config (and .terraform/, which a module with neither
    # providers nor a backend block does not get)
    keep(files, app_settings.data_dir)
    assert any(p.name == "terraform.tfstate" for p, _digest in files), "no Terraform state to search"
    assert any(p.name == "terraformrc" for p, _digest in files), "no Terraform CLI configuration to search"
    for (path, _digest), text in files.items():
        assert not leaked(text, secrets), f"{path} holds {leaked(text, secrets)}"

    # the environment of Terraform's processes (written by the envdump module on every apply and destroy)
    envs = {path: path.read_text(errors="replace") for path in sorted(dumps.iterdir())}
    assert len(envs) >= 4 and all("\nTF_VAR_environment_name=pr-" in text for text in envs.values()), envs
    assert any(path.name.startswith("destroy-") for path in envs), "no destroy-time dump"
    for path, text in envs.items():
        assert set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", text, re.M)) & set(WITHHELD) == set(), path
        # the database password too: PG_CONN_STR is the Terraform state role's, never the app's URL (issue 9)
        assert not leaked(text, secrets), f"Terraform's environment holds {leaked(text, secrets)}"

    # what the app told GitHub (request bodies: check runs, comments, deployments) and served over HTTP
    for call in github.calls():
        text = f"{call.path}?{call.query} {json.dumps(call.json)}"
        assert not leaked(text, secrets), f"{call} sent {leaked(text, secrets)} to GitHub"
    for text in served:
        assert not leaked(text, secrets), f"the app served {leaked(text, secrets)}"

    # the settings themselves
    for shown in (repr(app_settings), str(app_settings), repr(configured), repr(app[keys.SETTINGS])):
        assert not leaked(shown, secrets), f"repr(settings) shows {leaked(shown, secrets)}"


async def _ready(app):
    return app[keys.READY].is_set()


async def _deployed(db, env_id: int, sha: str):
    env = await settled(db, env_id, "active")
    return env if env and env["deployed_sha"] == sha else None


def keep(files: dict[tuple[Path, str], str], root: Path) -> None:
    """Every file under `root` as it is now, each distinct content once."""
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            files[path, hashlib.sha256(text.encode()).hexdigest()] = text
