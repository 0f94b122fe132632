"""Settings, read once from the environment (and a `.env` file) and validated."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ghapp.core.gateway import PreviewSite, preview_site

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


# Every variable ghapp reads, and those DESIGN.md documents (read by parts that may not be in this build yet).
KNOWN_VARIABLES = frozenset(
    """GITHUB_APP_ID GITHUB_PRIVATE_KEY GITHUB_PRIVATE_KEY_PATH GITHUB_WEBHOOK_SECRET GITHUB_API_URL
    GITHUB_CLIENT_ID GITHUB_CLIENT_SECRET DATABASE_URL GHAPP_DATA_DIR GHAPP_TERRAFORM_MODULE GHAPP_TERRAFORM_BIN
    GHAPP_MAX_PARALLEL_RUNS GHAPP_ENV_TTL GHAPP_RUN_TIMEOUT GHAPP_RESYNC_INTERVAL GHAPP_ADMIN_TOKEN
    GHAPP_ALLOW_FORKS GHAPP_HOST GHAPP_PORT GHAPP_PUBLIC_URL GHAPP_PUSH_SETTLE GHAPP_LEASE_TTL GHAPP_POLL_INTERVAL
    GHAPP_RETRY_BASE GHAPP_RETRY_CAP GHAPP_MAX_ATTEMPTS GHAPP_SHUTDOWN_GRACE GHAPP_BODY_TIMEOUT GHAPP_MODULES
    GHAPP_REPO_MODULES GHAPP_TERRAFORM_ENV GHAPP_PREVIEW_DOMAIN GHAPP_GATEWAY_PORT GHAPP_MAX_PREVIEWS
    GHAPP_RETENTION GHAPP_INTAKE_BATCH GHAPP_INTAKE_WAIT GHAPP_RESYNC_BATCH GHAPP_RATE_RESERVE""".split()
)
MIN_ADMIN_TOKEN = 24


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `72h`, `1h30m` or plain seconds → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 72h)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _reserve(raw: str | None, default: int) -> int:
    """GHAPP_RATE_RESERVE: a count of requests, 0 allowed (never hold optional work back)."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise ConfigError(f"GHAPP_RATE_RESERVE={raw!r} is not a number of requests (0 or more)")
    return int(raw)


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, optional `export` and quotes. Missing file → {}."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:  # an inline comment after an unquoted value
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def admin_token_problem(token: str) -> str | None:
    """Why `token` is too weak to guard writes, or None (pure)."""
    if len(token) < MIN_ADMIN_TOKEN:
        return f"it has {len(token)} characters, at least {MIN_ADMIN_TOKEN} are needed"
    if len(set(token)) < 8:
        return "it repeats too few different characters"
    lowered = token.lower()
    if any(word in lowered for word in ("password", "changeme", "admin", "secret", "token", "123456", "qwerty")):
        return "it contains a common word"
    return None


def unknown_variables(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> list[str]:
    """A warning for each `GHAPP_*`/`GITHUB_*` variable (environment or `.env`) that ghapp does not know, naming
    the closest known one: a misspelt secret must not be ignored silently."""
    sources = dict.fromkeys(read_dotenv(dotenv) if dotenv else {}, ".env")
    sources.update(dict.fromkeys(os.environ if environ is None else environ, "the environment"))
    warnings = []
    for name, source in sorted(sources.items()):
        if not name.startswith(("GHAPP_", "GITHUB_")) or name in KNOWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"unknown variable {name} (from {source}) is ignored{hint}")
    return warnings


@dataclasses.dataclass(frozen=True)
class Settings:
    app_id: str | None = None
    private_key: str | None = dataclasses.field(default=None, repr=False)
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    database_url: str | None = dataclasses.field(default=None, repr=False)
    data_dir: Path = Path(".ghapp")
    terraform_module: Path = Path("terraform/local")
    terraform_bin: str | None = None
    max_parallel_runs: int = 4
    max_previews: int | None = None  # live previews per repository (GHAPP_MAX_PREVIEWS); None: unlimited
    retention: float = 30 * 86400  # runs, their logs and done commands older than this are deleted
    env_ttl: float = 72 * 3600
    run_timeout: float = 30 * 60
    resync_interval: float = 10 * 60
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    allow_forks: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    gateway_port: int = 8081  # the preview gateway (GHAPP_GATEWAY_PORT); 0: any free port (tests)
    preview_domain: str | None = None  # GHAPP_PREVIEW_DOMAIN (domain[:port]); None: `localhost:<gateway_port>`
    public_url: str | None = None  # how people reach this app (links on pull requests); default http://host:port
    push_settle: float = 2.0  # a change to an existing environment waits this long for more pushes
    # Reconciler tuning; defaults suit production, tests shorten them.
    lease_ttl: float = 30.0
    poll_interval: float = 5.0
    retry_base: float = 10.0
    retry_cap: float = 15 * 60
    max_attempts: int = 6
    interrupt_grace: float = 10.0
    shutdown_grace: float = 30.0
    # Names or globs of the app's variables that Terraform may see (GHAPP_TERRAFORM_ENV); nothing else passes.
    terraform_env_allow: tuple[str, ...] = ("TF_VAR_*",)
    body_timeout: float = 15.0  # a request body must arrive whole within this (GitHub gives up after 10 s)
    # Group commit: concurrent deliveries share one transaction of at most this many, and a delivery waits at
    # most `intake_wait` seconds for batch-mates.
    intake_batch: int = 64
    intake_wait: float = 0.002
    # GitHub API budget: repositories per resync pass (the next pass continues where it stopped), and the
    # remaining requests of an installation below which optional work (the resync) waits for the next window.
    resync_batch: int = 50
    rate_reserve: int = 1000
    # Extra environment that ghapp itself sets for every Terraform run (the demo, tests).
    terraform_env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def offline(self) -> bool:
        return not self.app_id

    @property
    def preview_site(self) -> PreviewSite:
        """Where previews are published through the gateway (validated by `from_env`)."""
        return preview_site(self.preview_domain, self.gateway_port, self.base_url.startswith("https://"))

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
        env = {**(read_dotenv(dotenv) if dotenv else {}), **(os.environ if environ is None else environ)}

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: int, kind: type[int] = int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {raw!r}")
            return value

        def duration(name: str, default: float, allow_zero: bool = False) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = parse_duration(raw)
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
            if value < 0 or (value == 0 and not allow_zero):
                raise ConfigError(f"{name} must be positive, got {raw!r}")
            return value

        def cap(name: str) -> int | None:
            raw = get(name)
            if raw is None or raw.lower() == "unlimited":
                return None
            return number(name, 0)  # not None here: `raw` is set, so the default is never used

        def flag(name: str) -> bool:
            raw = (get(name) or "false").lower()
            if raw not in {"true", "false", "1", "0", "yes", "no"}:
                raise ConfigError(f"{name} must be true or false, got {raw!r}")
            return raw in {"true", "1", "yes"}

        def port() -> int:
            value = number("GHAPP_PORT", defaults.port)
            if value > 65535:
                raise ConfigError(f"GHAPP_PORT must be a TCP port (1-65535), got {value}")
            return value

        def gateway_port() -> int:
            raw = get("GHAPP_GATEWAY_PORT")
            if raw is None:
                return defaults.gateway_port
            if not raw.isascii() or not raw.isdigit() or int(raw) > 65535:
                raise ConfigError(f"GHAPP_GATEWAY_PORT must be a TCP port (1-65535; 0: any free one), got {raw!r}")
            return int(raw)

        def domain() -> str | None:
            raw = get("GHAPP_PREVIEW_DOMAIN")
            try:
                preview_site(raw, 0)
            except ValueError as e:
                raise ConfigError(f"GHAPP_PREVIEW_DOMAIN: {e}") from None
            return raw

        private_key = get("GITHUB_PRIVATE_KEY")
        key_path = get("GITHUB_PRIVATE_KEY_PATH")
        if private_key is None and key_path is not None:
            try:
                private_key = Path(key_path).read_text()
            except OSError as e:
                raise ConfigError(f"GITHUB_PRIVATE_KEY_PATH: cannot read {key_path}: {e.strerror}") from None
        app_id = get("GITHUB_APP_ID")
        if app_id is not None and private_key is None:
            raise ConfigError("GITHUB_APP_ID is set but neither GITHUB_PRIVATE_KEY nor GITHUB_PRIVATE_KEY_PATH is")

        defaults = cls()
        allow = get("GHAPP_TERRAFORM_ENV")
        return cls(
            terraform_env_allow=(
                tuple(p.strip() for p in allow.split(",") if p.strip()) if allow else defaults.terraform_env_allow
            ),
            app_id=app_id,
            private_key=private_key,
            webhook_secret=get("GITHUB_WEBHOOK_SECRET"),
            github_api_url=(get("GITHUB_API_URL") or defaults.github_api_url).rstrip("/"),
            database_url=get("DATABASE_URL"),
            data_dir=Path(get("GHAPP_DATA_DIR") or defaults.data_dir).absolute(),
            terraform_module=Path(get("GHAPP_TERRAFORM_MODULE") or defaults.terraform_module).absolute(),
            terraform_bin=get("GHAPP_TERRAFORM_BIN"),
            max_parallel_runs=number("GHAPP_MAX_PARALLEL_RUNS", defaults.max_parallel_runs),
            max_previews=cap("GHAPP_MAX_PREVIEWS"),
            retention=duration("GHAPP_RETENTION", defaults.retention),
            env_ttl=duration("GHAPP_ENV_TTL", defaults.env_ttl),
            run_timeout=duration("GHAPP_RUN_TIMEOUT", defaults.run_timeout),
            resync_interval=duration("GHAPP_RESYNC_INTERVAL", defaults.resync_interval),
            admin_token=get("GHAPP_ADMIN_TOKEN"),
            allow_forks=flag("GHAPP_ALLOW_FORKS"),
            host=get("GHAPP_HOST") or defaults.host,
            public_url=get("GHAPP_PUBLIC_URL"),
            port=port(),
            gateway_port=gateway_port(),
            preview_domain=domain(),
            push_settle=duration("GHAPP_PUSH_SETTLE", defaults.push_settle, allow_zero=True),
            lease_ttl=duration("GHAPP_LEASE_TTL", defaults.lease_ttl),
            poll_interval=duration("GHAPP_POLL_INTERVAL", defaults.poll_interval),
            retry_base=duration("GHAPP_RETRY_BASE", defaults.retry_base),
            retry_cap=duration("GHAPP_RETRY_CAP", defaults.retry_cap),
            max_attempts=number("GHAPP_MAX_ATTEMPTS", defaults.max_attempts),
            shutdown_grace=duration("GHAPP_SHUTDOWN_GRACE", defaults.shutdown_grace),
            body_timeout=duration("GHAPP_BODY_TIMEOUT", defaults.body_timeout),
            intake_batch=number("GHAPP_INTAKE_BATCH", defaults.intake_batch),
            intake_wait=duration("GHAPP_INTAKE_WAIT", defaults.intake_wait, allow_zero=True),
            resync_batch=number("GHAPP_RESYNC_BATCH", defaults.resync_batch),
            rate_reserve=_reserve(get("GHAPP_RATE_RESERVE"), defaults.rate_reserve),
        )

    def check_serve(self) -> None:
        """What `ghapp serve` refuses to start with (ConfigError naming the variable)."""
        if not self.webhook_secret:
            if not self.offline:
                raise ConfigError("GITHUB_WEBHOOK_SECRET is required when GITHUB_APP_ID is set")
            if not is_loopback(self.host):
                raise ConfigError(
                    f"GITHUB_WEBHOOK_SECRET is unset and GHAPP_HOST={self.host} is not a loopback address: anyone "
                    "who can reach it could send unsigned deliveries. Set GITHUB_WEBHOOK_SECRET, or listen on "
                    "127.0.0.1 (GHAPP_HOST) for offline development."
                )
        if self.gateway_port == self.port:
            raise ConfigError(
                f"GHAPP_GATEWAY_PORT and GHAPP_PORT are both {self.port}: the preview gateway needs a port of its own"
            )
        if self.admin_token is not None and (problem := admin_token_problem(self.admin_token)):
            raise ConfigError(
                f"GHAPP_ADMIN_TOKEN is too weak: {problem}. Generate one with "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, or unset it to refuse every write."
            )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
