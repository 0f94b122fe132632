"""`ghapp setup`: the App-manifest flow against the fake GitHub, as a browser would drive it."""

from __future__ import annotations

import html
import json
import re
import stat

from ghapp.app_manifest import create_setup_app, update_dotenv, web_url
from ghapp.config import Settings, read_dotenv
from tests.support import ROOT


async def test_manifest_flow_writes_credentials_with_mode_0600(aiohttp_client, fake_github, tmp_path):
    (tmp_path / ".env").write_text("# mine\nGHAPP_ENV_TTL=24h\nGITHUB_APP_ID=old\n")
    app = create_setup_app(
        ROOT / "app.yml",
        public_url="https://ghapp.example.com",
        callback_url="http://127.0.0.1:9/setup/callback",
        api_url=fake_github.base_url,
        directory=tmp_path,
        org="acme",
    )
    client = await aiohttp_client(app)

    page = await (await client.get("/")).text()
    action = html.unescape(re.search(r'<form action="([^"]+)"', page).group(1))
    assert action.startswith(f"{fake_github.base_url}/organizations/acme/settings/apps/new?state=")
    manifest = json.loads(html.unescape(re.search(r'name="manifest" value="([^"]+)"', page).group(1)))
    assert manifest["hook_attributes"]["url"] == "https://ghapp.example.com/webhooks"
    assert manifest["redirect_url"] == "http://127.0.0.1:9/setup/callback"
    assert sorted(manifest["default_events"]) == ["check_run", "check_suite", "issue_comment", "pull_request", "status"]
    assert manifest["default_permissions"] == {
        "checks": "write",
        "contents": "read",
        "deployments": "write",
        "issues": "write",
        "pull_requests": "read",
        "statuses": "read",
        "metadata": "read",
    }
    state = action.split("state=")[1]

    assert (await client.get("/setup/callback", params={"code": "abc", "state": "forged"})).status == 400
    fake_github.add_manifest_code("abc123")
    resp = await client.get("/setup/callback", params={"code": "abc123", "state": state})
    assert resp.status == 200, await resp.text()
    assert fake_github.operations() == ["apps/create-from-manifest"]

    env_file = tmp_path / ".env"
    values = read_dotenv(env_file)
    assert values["GITHUB_APP_ID"] == str(fake_github.app_id) and values["GHAPP_ENV_TTL"] == "24h"
    assert values["GITHUB_WEBHOOK_SECRET"] == fake_github.webhook_secret
    # the App's OAuth client, for "Sign in with GitHub" on previews
    assert values["GITHUB_CLIENT_ID"] == fake_github.client_id
    assert values["GITHUB_CLIENT_SECRET"] == fake_github.client_secret
    key = tmp_path / f"{fake_github.slug}.private-key.pem"
    assert key.read_text() == fake_github.private_key_pem
    for path in (env_file, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = Settings.from_env(environ={}, dotenv=env_file)
    assert settings.app_id == str(fake_github.app_id) and settings.private_key == fake_github.private_key_pem
    assert settings.sign_in_configured and settings.client_secret == fake_github.client_secret

    # the one-time code cannot be used twice
    assert (await client.get("/setup/callback", params={"code": "abc123", "state": state})).status == 502


def test_update_dotenv_replaces_only_its_keys(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\nexport B=2\n")
    update_dotenv(path, {"B": "3", "C": "4"})
    assert path.read_text() == "A=1\nB=3\nC=4\n"


def test_web_url():
    assert web_url("https://api.github.com") == "https://github.com"
    assert web_url("https://ghe.example.com/api/v3") == "https://ghe.example.com"
