"""Settings from the environment and `.env`: durations, dotenv parsing, defaults (DESIGN.md's table), errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ghapp import config
from ghapp.config import ConfigError, Settings, parse_duration, read_dotenv

pytestmark = pytest.mark.fast  # no PostgreSQL, Terraform or server: `pytest -m fast`

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


def from_env(**environ: str) -> Settings:
    return Settings.from_env(environ, dotenv=None)


# --- parse_duration --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("72h", 72 * 3600),
        ("2d", 172800),
        ("500ms", 0.5),
        ("1h30m", 5400),
        ("1d12h", 129600),
        ("1m30s500ms", 90.5),
        ("1.5h", 5400),
        ("0.25s", 0.25),
        ("45", 45),
        ("2.5", 2.5),
        ("0", 0),
        ("0s", 0),
        (" 10m ", 600),
        ("10M", 600),
        ("72H", 72 * 3600),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "h",
        "10x",
        "10 m",
        "1h 30m",
        "-5s",
        "-5",
        "+5s",
        "1h30",
        "30m1",
        "1.5.5s",
        ".5s",
        "5.s",
        "1e3",
        "nan",
        "inf",
        "10mm",
        "s10",
        "1h-30m",
        "1_000s",
        "½h",
    ],
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_duration_error_shows_the_input():
    with pytest.raises(ValueError, match="'soon'"):
        parse_duration("soon")


# --- read_dotenv -----------------------------------------------------------------------------------------------------


def test_read_dotenv(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=yes\n"
        'DOUBLE="quoted value"\n'
        "SINGLE='single # not a comment'\n"
        "  SPACED  =  padded  \n"
        "EMPTY=\n"
        'EMPTY_QUOTED=""\n'
        "URL=postgresql://u:p@h/db?sslmode=disable&x=1\n"
        "MISMATCHED=\"half'\n"
        'LONE_QUOTE="\n'
        "   # indented comment\n"
        "not a pair\n"
        "#COMMENTED=out\n"
        "DUP=first\n"
        "DUP=second\n"
    )
    assert read_dotenv(path) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "DOUBLE": "quoted value",
        "SINGLE": "single # not a comment",
        "SPACED": "padded",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "URL": "postgresql://u:p@h/db?sslmode=disable&x=1",
        "MISMATCHED": "\"half'",
        "LONE_QUOTE": '"',
        "DUP": "second",
    }


def test_read_dotenv_missing_file_or_directory(tmp_path):
    assert read_dotenv(tmp_path / "missing.env") == {}
    assert read_dotenv(tmp_path) == {}


# --- Settings.from_env: defaults -------------------------------------------------------------------------------------


def test_defaults_match_the_design_table():
    settings = from_env()
    assert settings.app_id is None and settings.offline
    assert settings.private_key is None and settings.webhook_secret is None
    assert settings.github_api_url == "https://api.github.com"
    assert settings.database_url is None
    assert settings.data_dir == Path(".ghapp").absolute()
    assert settings.terraform_module == Path("terraform/local").absolute()
    assert settings.terraform_bin is None
    assert settings.max_parallel_runs == 4
    assert settings.env_ttl == 72 * 3600
    assert settings.expiry_warning == 2 * 3600
    assert settings.run_timeout == 30 * 60
    assert settings.resync_interval == 10 * 60
    assert settings.admin_token is None
    assert settings.allow_forks is False
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize(("value", "seconds"), [("30m", 1800), ("0", 0), ("1d", 86400)])
def test_expiry_warning(value, seconds):
    assert from_env(GHAPP_EXPIRY_WARNING=value).expiry_warning == seconds


def test_a_negative_expiry_warning_is_refused():
    with pytest.raises(ConfigError, match="GHAPP_EXPIRY_WARNING"):
        from_env(GHAPP_EXPIRY_WARNING="-1h")


def test_blank_values_mean_unset():
    settings = from_env(
        GITHUB_APP_ID="  ",
        GITHUB_WEBHOOK_SECRET="",
        GHAPP_PORT=" ",
        GHAPP_ENV_TTL="",
        GHAPP_ALLOW_FORKS="",
        GHAPP_HOST="",
    )
    assert settings == from_env()


def test_every_variable(tmp_path):
    settings = from_env(
        GITHUB_APP_ID="12345",
        GITHUB_PRIVATE_KEY=PEM,
        GITHUB_WEBHOOK_SECRET="s3cret",
        GITHUB_API_URL="https://ghe.example.com/api/v3/",
        DATABASE_URL="postgresql://u@db/ghapp",
        GHAPP_DATA_DIR=str(tmp_path / "data"),
        GHAPP_TERRAFORM_MODULE="terraform/kubernetes",
        GHAPP_TERRAFORM_BIN="/usr/bin/tofu",
        GHAPP_MAX_PARALLEL_RUNS="8",
        GHAPP_ENV_TTL="24h",
        GHAPP_RUN_TIMEOUT="1h",
        GHAPP_RESYNC_INTERVAL="5m",
        GHAPP_ADMIN_TOKEN="t0ken",
        GHAPP_ALLOW_FORKS="true",
        GHAPP_HOST="0.0.0.0",
        GHAPP_PORT="9000",
        GHAPP_PUSH_SETTLE="0",
    )
    assert settings.app_id == "12345" and not settings.offline
    assert settings.private_key == PEM.strip() and settings.webhook_secret == "s3cret"
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert settings.database_url == "postgresql://u@db/ghapp"
    assert settings.data_dir == tmp_path / "data"
    assert settings.terraform_module == Path("terraform/kubernetes").absolute()
    assert settings.terraform_bin == "/usr/bin/tofu"
    assert settings.max_parallel_runs == 8
    assert (settings.env_ttl, settings.run_timeout, settings.resync_interval) == (86400, 3600, 300)
    assert settings.admin_token == "t0ken" and settings.allow_forks is True
    assert (settings.host, settings.port, settings.push_settle) == ("0.0.0.0", 9000, 0)


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("1024", 1024),
        ("64K", 65536),
        ("500M", 500 * 1024**2),
        ("500MB", 500 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1g", 1024**3),
        ("3 T", 3 * 1024**4),
    ],
)
def test_source_limits_take_sizes(raw, size):
    settings = from_env(GHAPP_SOURCE_MAX_BYTES=raw, GHAPP_SOURCE_MAX_FILE_BYTES=raw, GHAPP_SOURCE_MAX_FILES="7")
    assert (settings.source_max_bytes, settings.source_max_file_bytes, settings.source_max_files) == (size, size, 7)


def test_source_limits_defaults():
    settings = from_env()
    assert (settings.source_max_bytes, settings.source_max_files, settings.source_max_file_bytes) == (
        1024**3,
        100_000,
        100 * 1024**2,
    )


def test_secrets_stay_out_of_repr():
    settings = from_env(
        GITHUB_APP_ID="1",
        GITHUB_PRIVATE_KEY=PEM,
        GITHUB_WEBHOOK_SECRET="hook-secret",
        GHAPP_ADMIN_TOKEN="admin-token",
        DATABASE_URL="postgresql://u:db-password@h/d",
    )
    text = repr(settings)
    for secret in ("MIIB", "hook-secret", "admin-token", "db-password"):
        assert secret not in text


def test_process_environment_is_read_when_no_mapping_is_given(monkeypatch):
    monkeypatch.setenv("GHAPP_PORT", "9123")
    assert Settings.from_env(dotenv=None).port == 9123


# --- .env ------------------------------------------------------------------------------------------------------------


def test_dotenv_is_read_and_the_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GHAPP_PORT=9000\nexport GHAPP_HOST=0.0.0.0\nGITHUB_WEBHOOK_SECRET='from file'\n")
    settings = Settings.from_env({"GHAPP_PORT": "9100"}, dotenv=dotenv)
    assert (settings.port, settings.host, settings.webhook_secret) == (9100, "0.0.0.0", "from file")


def test_missing_dotenv_is_fine(tmp_path):
    assert Settings.from_env({}, dotenv=tmp_path / "nope.env") == from_env()


def test_dotenv_none_reads_no_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("GHAPP_PORT=9000\n")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}, dotenv=None).port == 8080
    assert Settings.from_env({}).port == 9000, "the default is ./.env"


def test_errors_in_dotenv_are_reported_too(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GHAPP_MAX_PARALLEL_RUNS=lots\n")
    with pytest.raises(ConfigError, match="GHAPP_MAX_PARALLEL_RUNS"):
        Settings.from_env({}, dotenv=dotenv)


# --- flags -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        (" Yes ", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("No", False),
    ],
)
def test_allow_forks_flag(raw, value):
    assert from_env(GHAPP_ALLOW_FORKS=raw).allow_forks is value


# --- errors, each naming its variable --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("GHAPP_MAX_PARALLEL_RUNS", "four"),
        ("GHAPP_MAX_PARALLEL_RUNS", "2.5"),
        ("GHAPP_MAX_PARALLEL_RUNS", "0"),
        ("GHAPP_MAX_PARALLEL_RUNS", "-1"),
        ("GHAPP_PORT", "http"),
        ("GHAPP_PORT", "0"),
        ("GHAPP_PORT", "-8080"),
        ("GHAPP_PORT", "8080.0"),
        ("GHAPP_PORT", "70000"),
        ("GHAPP_MAX_ATTEMPTS", "many"),
        ("GHAPP_MAX_ATTEMPTS", "0"),
        ("GHAPP_ENV_TTL", "soon"),
        ("GHAPP_ENV_TTL", "0"),
        ("GHAPP_ENV_TTL", "0h"),
        ("GHAPP_ENV_TTL", "-1h"),
        ("GHAPP_ENV_TTL", "72 hours"),
        ("GHAPP_RUN_TIMEOUT", "30 minutes"),
        ("GHAPP_RUN_TIMEOUT", "0s"),
        ("GHAPP_RESYNC_INTERVAL", "often"),
        ("GHAPP_RESYNC_INTERVAL", "0m"),
        ("GHAPP_PUSH_SETTLE", "later"),
        ("GHAPP_PUSH_SETTLE", "-1s"),
        ("GHAPP_LEASE_TTL", "0"),
        ("GHAPP_POLL_INTERVAL", "x"),
        ("GHAPP_RETRY_BASE", "0"),
        ("GHAPP_RETRY_CAP", "never"),
        ("GHAPP_SHUTDOWN_GRACE", "0"),
        ("GHAPP_ALLOW_FORKS", "maybe"),
        ("GHAPP_ALLOW_FORKS", "on"),
        ("GHAPP_ALLOW_FORKS", "2"),
        ("GHAPP_SOURCE_MAX_BYTES", "a lot"),
        ("GHAPP_SOURCE_MAX_BYTES", "0"),
        ("GHAPP_SOURCE_MAX_BYTES", "1.5G"),
        ("GHAPP_SOURCE_MAX_FILE_BYTES", "-1M"),
        ("GHAPP_SOURCE_MAX_FILES", "lots"),
    ],
)
def test_bad_values_name_the_variable(name, raw):
    with pytest.raises(ConfigError, match=name):
        from_env(**{name: raw})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_app_id_without_a_key():
    with pytest.raises(ConfigError, match="GITHUB_APP_ID") as info:
        from_env(GITHUB_APP_ID="12345")
    assert "GITHUB_PRIVATE_KEY" in str(info.value)


def test_private_key_from_a_path(tmp_path):
    key = tmp_path / "app.pem"
    key.write_text(PEM)
    settings = from_env(GITHUB_APP_ID="12345", GITHUB_PRIVATE_KEY_PATH=str(key))
    assert settings.private_key == PEM


def test_private_key_text_wins_over_the_path(tmp_path):
    settings = from_env(GITHUB_APP_ID="1", GITHUB_PRIVATE_KEY=PEM, GITHUB_PRIVATE_KEY_PATH=str(tmp_path / "none"))
    assert settings.private_key == PEM.strip()


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable"])
def test_unreadable_key_path(tmp_path, kind):
    path = tmp_path / "app.pem"
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        path.write_text(PEM)
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: make it unreadable another way
            path.unlink()
            path.symlink_to(path)  # a symlink loop cannot be read by anyone
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY_PATH") as info:
        from_env(GITHUB_APP_ID="12345", GITHUB_PRIVATE_KEY_PATH=str(path))
    assert str(path) in str(info.value)


def test_unreadable_key_path_fails_even_without_app_id(tmp_path):
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY_PATH"):
        from_env(GITHUB_PRIVATE_KEY_PATH=str(tmp_path / "missing.pem"))


def test_replace_keeps_other_fields():
    settings = from_env(GHAPP_PORT="9000")
    changed = settings.replace(allow_forks=True)
    assert (changed.port, changed.allow_forks, settings.allow_forks) == (9000, True, False)


def test_unknown_variables_are_reported_with_the_closest_known_name(tmp_path):
    """Finding 6: GHAPP_WEBHOOK_SECRET (for GITHUB_WEBHOOK_SECRET) was ignored silently."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("GHAPP_ADMIN_TOKNE=x\n")
    warnings = config.unknown_variables(
        {"GHAPP_WEBHOOK_SECRET": "s", "GITHUB_APP_ID": "1", "HOME": "/root", "GHAPP_PORT": "1"}, dotenv
    )
    assert warnings == [
        "unknown variable GHAPP_ADMIN_TOKNE (from .env) is ignored; did you mean GHAPP_ADMIN_TOKEN?",
        "unknown variable GHAPP_WEBHOOK_SECRET (from the environment) is ignored; did you mean GITHUB_WEBHOOK_SECRET?",
    ]
    assert config.unknown_variables({"GHAPP_ZZZZZZZZZZZZZZZZZ": "1"}, None) == [
        "unknown variable GHAPP_ZZZZZZZZZZZZZZZZZ (from the environment) is ignored"
    ]


def test_serve_without_a_secret_only_on_loopback():
    """Finding 6: offline mode without a webhook secret accepted unsigned deliveries on any address."""
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        Settings(host=host).check_serve()
    for host in ("0.0.0.0", "::", "192.168.1.5", "ghapp.example.com"):
        with pytest.raises(ConfigError, match=f"GITHUB_WEBHOOK_SECRET is unset and GHAPP_HOST={host} is not"):
            Settings(host=host).check_serve()
    Settings(host="0.0.0.0", webhook_secret="s").check_serve()
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET is required"):
        Settings(app_id="1", private_key="k").check_serve()


@pytest.mark.parametrize(
    "token", ["adm1n", "s3cret-admin-token", "a" * 40, "ab" * 20, "my-admin-password-is-long-enough"]
)
def test_weak_admin_tokens_are_refused_at_start(token):
    """Finding 4: `adm1n` was accepted as GHAPP_ADMIN_TOKEN."""
    with pytest.raises(ConfigError, match="GHAPP_ADMIN_TOKEN is too weak"):
        Settings(admin_token=token).check_serve()


def test_a_strong_admin_token_is_accepted():
    Settings(admin_token="kR3v-9xQpLm2ZtW8sYb1NcHa4Ud7").check_serve()
    Settings(admin_token=None).check_serve()


def test_intake_and_budget_settings_defaults_and_values():
    defaults = Settings.from_env({}, dotenv=None)
    assert (defaults.intake_batch, defaults.intake_wait) == (64, 0.002)
    assert (defaults.resync_batch, defaults.rate_reserve) == (50, 1000)
    env = {"GHAPP_INTAKE_BATCH": "16", "GHAPP_INTAKE_WAIT": "0", "GHAPP_RESYNC_BATCH": "5", "GHAPP_RATE_RESERVE": "0"}
    settings = Settings.from_env(env, dotenv=None)
    assert (settings.intake_batch, settings.intake_wait, settings.resync_batch, settings.rate_reserve) == (16, 0, 5, 0)
    for name, bad in [("GHAPP_INTAKE_BATCH", "0"), ("GHAPP_INTAKE_WAIT", "-1ms"), ("GHAPP_RATE_RESERVE", "-5")]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: bad}, dotenv=None)
    assert not config.unknown_variables(env, dotenv=None)


def test_the_module_catalog_and_repository_modules(tmp_path):
    assert from_env().modules_dir == Path("terraform").absolute() and from_env().repo_modules == ()
    settings = from_env(GHAPP_MODULES=str(tmp_path), GHAPP_REPO_MODULES=" acme/web, tools/* ,")
    assert settings.modules_dir == tmp_path and settings.repo_modules == ("acme/web", "tools/*")
    with pytest.raises(ConfigError, match="GHAPP_MODULES=.* is not a directory"):
        from_env(GHAPP_MODULES=str(tmp_path / "missing"))
    for bad in ("acme", "*/web", "acme/web/x", "acme/we b"):
        with pytest.raises(ConfigError, match="GHAPP_REPO_MODULES: .* is not `owner/name` or `owner/\\*`"):
            from_env(GHAPP_REPO_MODULES=bad)
