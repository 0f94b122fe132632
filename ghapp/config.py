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

from ghapp.core.contract import Access
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
    GHAPP_RETENTION GHAPP_INTAKE_BATCH GHAPP_INTAKE_WAIT GHAPP_RESYNC_BATCH GHAPP_RATE_RESERVE
    GHAPP_EXPIRY_WARNING GHAPP_SOURCE_MAX_BYTES GHAPP_SOURCE_MAX_FILES GHAPP_SOURCE_MAX_FILE_BYTES
    GHAPP_SLEEP_AFTER GHAPP_WAKE_TIMEOUT GHAPP_ACCESS""".split()
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


_SIZE = re.compile(r"(\d+)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """`1G`, `500MB`, `64KiB` or plain bytes → bytes (units are powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 500M, 1G or a number of bytes)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "")[:1].lower()]


def _reserve(raw: str | None, default: int) -> int:
    """GHAPP_RATE_RESERVE: a count of requests, 0 allowed (never hold optional work back)."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise ConfigError(f"GHAPP_RATE_RESERVE={raw!r} is not a number of requests (0 or more)")
    return int(raw)


def web_url(api_url: str) -> str:
    """Where people use GitHub: github.com for api.github.com, the host itself for Enterprise Server."""
    if api_url.rstrip("/") == "https://api.github.com":
        return "https://github.com"
    return api_url.rstrip("/").removesuffix("/api/v3")


def _access(raw: str | None) -> Access | None:
    if raw is None:
        return None
    try:
        return Access(raw.lower())
    except ValueError:
        raise ConfigError(f"GHAPP_ACCESS must be public or repository, got {raw!r}") from None


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
    modules_dir: Path = Path("terraform")  # the catalog (GHAPP_MODULES): `module: <name>` is a directory in it
    repo_modules: tuple[str, ...] = ()  # repositories (`owner/name`, `owner/*`) whose own module may run
    terraform_bin: str | None = None
    max_parallel_runs: int = 4
    max_previews: int | None = None  # live previews per repository (GHAPP_MAX_PREVIEWS); None: unlimited
    retention: float = 30 * 86400  # runs, their logs and done commands older than this are deleted
    env_ttl: float = 72 * 3600
    expiry_warning: float = 2 * 3600  # the PR is reminded this long before its preview expires; 0: never
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
    # The pull request's code (`source: true`): limits on its archive, checked while it is extracted.
    source_max_bytes: int = 1024**3
    source_max_files: int = 100_000
    source_max_file_bytes: int = 100 * 1024**2
    # Sleep: a preview with no request through the gateway for this long is put to sleep, unless its configuration
    # says otherwise (`sleep_after`); None (GHAPP_SLEEP_AFTER=never): only by hand. A request to a sleeping preview
    # wakes it; a request that is not from a browser is held up to `wake_timeout`, then answered 503.
    sleep_after: float | None = 3600.0
    wake_timeout: float = 30.0
    # "Sign in with GitHub" on previews: the App's OAuth client (GITHUB_CLIENT_ID / GITHUB_CLIENT_SECRET).
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    # GHAPP_ACCESS: who may see a preview whose repository does not say; None: `repository` when sign-in is
    # configured, else `public` (`ghapp serve` warns).
    access: Access | None = None
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

    @property
    def sign_in_configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    @property
    def default_access(self) -> Access:
        if self.access is not None:
            return self.access
        return Access.REPOSITORY if self.sign_in_configured else Access.PUBLIC

    @property
    def gateway_domain(self) -> str:
        """Previews are `<environment_name>.<this>` (a port included when there is one)."""
        return self.preview_site.suffix

    @property
    def github_web_url(self) -> str:
        return web_url(self.github_api_url)

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

        def size(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = parse_size(raw)
            except ValueError as e:
                raise ConfigError(f"{name}: {e}") from None
            if value <= 0:
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

        def sleep_after() -> float | None:
            raw = get("GHAPP_SLEEP_AFTER")
            if raw is not None and raw.lower() == "never":
                return None
            return duration("GHAPP_SLEEP_AFTER", defaults.sleep_after or 0)

        def port() -> int:
            value = number("GHAPP_PORT", defaults.port)
            if value > 65535:
                raise ConfigError(f"GHAPP_PORT must be a TCP port (1-65535), got {value}")
            return value

        def modules_dir() -> Path:
            raw = get("GHAPP_MODULES")
            path = Path(raw or defaults.modules_dir).absolute()
            if raw is not None and not path.is_dir():
                raise ConfigError(f"GHAPP_MODULES={raw!r} is not a directory (the catalog of Terraform modules)")
            return path

        def repo_modules() -> tuple[str, ...]:
            patterns = tuple(p.strip() for p in (get("GHAPP_REPO_MODULES") or "").split(",") if p.strip())
            for pattern in patterns:
                if not re.fullmatch(r"[A-Za-z0-9_.-]+/(\*|[A-Za-z0-9_.-]+)", pattern):
                    raise ConfigError(f"GHAPP_REPO_MODULES: {pattern!r} is not `owner/name` or `owner/*`")
            return patterns

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
            modules_dir=modules_dir(),
            repo_modules=repo_modules(),
            max_parallel_runs=number("GHAPP_MAX_PARALLEL_RUNS", defaults.max_parallel_runs),
            max_previews=cap("GHAPP_MAX_PREVIEWS"),
            retention=duration("GHAPP_RETENTION", defaults.retention),
            env_ttl=duration("GHAPP_ENV_TTL", defaults.env_ttl),
            expiry_warning=duration("GHAPP_EXPIRY_WARNING", defaults.expiry_warning, allow_zero=True),
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
            source_max_bytes=size("GHAPP_SOURCE_MAX_BYTES", defaults.source_max_bytes),
            source_max_files=number("GHAPP_SOURCE_MAX_FILES", defaults.source_max_files),
            source_max_file_bytes=size("GHAPP_SOURCE_MAX_FILE_BYTES", defaults.source_max_file_bytes),
            sleep_after=sleep_after(),
            wake_timeout=duration("GHAPP_WAKE_TIMEOUT", defaults.wake_timeout),
            client_id=get("GITHUB_CLIENT_ID"),
            client_secret=get("GITHUB_CLIENT_SECRET"),
            access=_access(get("GHAPP_ACCESS")),
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
        if bool(self.client_id) != bool(self.client_secret):
            raise ConfigError("GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together: set both (or neither)")
        if self.access is Access.REPOSITORY and not self.sign_in_configured:
            raise ConfigError(
                "GHAPP_ACCESS=repository needs GitHub sign-in: set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET "
                "(the App's OAuth credentials; `ghapp setup` saves them)"
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
