"""Who may see a preview (pure): the access a preview resolves to, the verdict on one request, the preview hosts a
sign-in may return to (no open redirect), what a request to a preview carries, and the per-person decision cache."""

from __future__ import annotations

import dataclasses
import enum
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping

from ghapp.core.contract import Access
from ghapp.core.gateway import PreviewSite, environment_name_of

SESSION_COOKIE = "ghapp_preview"  # on each preview's own host: HttpOnly, SameSite=Lax, Secure on https
# On https the `__Host-` prefix makes browsers refuse the cookie from anywhere but that host over https, with no
# Domain: another preview (another pull request's code) cannot plant one for it on the shared parent domain.
SECURE_SESSION_COOKIE = f"__Host-{SESSION_COOKIE}"
TOKEN_HEADER = "X-Ghapp-Access-Token"  # automation; `Authorization: Bearer ghpa_...` works too
TOKEN_PREFIX = "ghpa_"
# The signed-in login, in ghapp's answer to a Kubernetes proxy's access check, which copies it to the preview's
# request. ghapp's own gateway never forwards a visitor's: it would be the visitor's word on who they are.
USER_HEADER = "X-Ghapp-User"
RESERVED_PREFIX = "/_ghapp/"  # ghapp's own pages on every preview host
SESSION_PATH = "/_ghapp/session"  # where a sign-in's ticket is turned into the preview host's cookie
SIGN_IN_HANDOFF = "/_ghapp/signin"  # on a preview host: on to ghapp's sign-in (ingress-nginx's auth-signin)
SESSION_TTL = 12 * 3600
DECISION_TTL = 5 * 60  # a person's read access to a repository is asked again after this


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    SIGN_IN = "sign_in"  # nobody signed in: a browser is sent to "Sign in with GitHub", others get 401
    DENY = "deny"  # signed in (or a token) without read access to the repository: 403
    UNAVAILABLE = "unavailable"  # `repository` access, but this ghapp has no OAuth credentials: 503


@dataclasses.dataclass(frozen=True)
class Facts:
    """What is known about one request to a preview; None: not presented."""

    access: Access
    sign_in_configured: bool
    token_valid: bool | None = None  # an automation token for this repository
    session_readable: bool | None = None  # a signed-in person who can read the repository


def verdict(facts: Facts) -> tuple[Verdict, str]:
    """The decision and why, in words a person can read. A token that is presented decides alone: a wrong one is
    refused rather than falling back to a browser sign-in that automation cannot do."""
    if facts.access is Access.PUBLIC:
        return Verdict.ALLOW, "public preview"
    if facts.token_valid is not None:
        if facts.token_valid:
            return Verdict.ALLOW, "access token"
        return Verdict.DENY, "the access token is unknown, revoked, expired or for another repository"
    if facts.session_readable is not None:
        if facts.session_readable:
            return Verdict.ALLOW, "signed in with read access"
        return Verdict.DENY, "your GitHub account cannot read this repository"
    if not facts.sign_in_configured:
        return Verdict.UNAVAILABLE, "this preview needs GitHub sign-in, which this ghapp is not configured for"
    return Verdict.SIGN_IN, "sign in with GitHub to see this preview"


def effective_access(configured: Access | None, default: Access) -> Access:
    """The repository's `access` (from `.github/preview.yml`), else the operator's GHAPP_ACCESS."""
    return configured if configured is not None else default


def bounded_access(head: Access | None, base: Access | None) -> Access | None:
    """The `access` a same-repository pull request's preview gets: the base branch's (None: the operator's default),
    or stricter. The pull request's own file is its author's word, and may only tighten it: `access: public` in a
    pull request takes effect once merged, as the maintainers' file."""
    if Access.REPOSITORY in (head, base):
        return Access.REPOSITORY
    return base


def looser_refused(head: Access | None, granted: Access) -> str | None:
    """What to tell the pull request when its file asked for looser access than it was granted, else None."""
    if head is Access.PUBLIC and granted is not Access.PUBLIC:
        return f"access: public in this pull request takes effect once merged (until then: {granted})"
    return None


def from_another_preview(origin: str, name: str, site: PreviewSite) -> bool:
    """Whether a request's `Origin` is a page of another preview than `name`'s. Previews share a parent
    domain, so browsers send the session cookie along with a sibling's requests (same site: SameSite does not stop
    them) and apply no CORS to its WebSockets: such a request must not count as signed in."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    other = environment_name_of(parts.netloc, site)
    return other is not None and other != name


@dataclasses.dataclass(frozen=True)
class PreviewTarget:
    """A URL on a preview host, taken apart: where a sign-in may return to."""

    scheme: str
    host: str  # with the port, as in the Host header
    name: str  # the environment name
    path: str  # path and query, always starting with `/`

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def at(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"


def preview_target(url: str, site: PreviewSite, *, https_only: bool = False) -> PreviewTarget | None:
    """`url` if it is an absolute http(s) URL on a preview host of `site` and nothing else (no user info, no
    backslashes or control characters that browsers read differently), else None: the sign-in's return URL, so
    ghapp never redirects anywhere else."""
    if not url or len(url) > 4096 or any(c in url for c in "\\\r\n\t\x00") or not url.isascii():
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return None
    allowed = ("https",) if https_only else ("http", "https")
    if parts.scheme not in allowed or "@" in parts.netloc or not parts.hostname:
        return None
    name = environment_name_of(parts.netloc, site)
    if name is None:
        return None
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//"):
        return None
    if path.startswith(RESERVED_PREFIX):
        return PreviewTarget(parts.scheme, parts.netloc.lower(), name, "/")
    return PreviewTarget(parts.scheme, parts.netloc.lower(), name, path + (f"?{parts.query}" if parts.query else ""))


def presented_token(headers: Mapping[str, str]) -> str | None:
    """An automation token: the `X-Ghapp-Access-Token` header, or `Authorization: Bearer ghpa_...` (any other
    Authorization belongs to the preview itself and is left alone)."""
    if token := headers.get(TOKEN_HEADER, "").strip():
        return token
    scheme, _, credential = headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential.startswith(TOKEN_PREFIX):
        return credential
    return None


def wants_page(method: str, accept: str) -> bool:
    """A browser navigating (it can follow a redirect to sign in), not a script or an API call."""
    return method in ("GET", "HEAD") and "text/html" in accept


def session_cookie(https: bool) -> str:
    return SECURE_SESSION_COOKIE if https else SESSION_COOKIE


def cookie_value(cookie_header: str, name: str) -> str | None:
    """One cookie's value from a Cookie header."""
    for part in cookie_header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            return value.strip()
    return None


def without_cookie(cookie_header: str, *names: str) -> str:
    """The Cookie header without ghapp's own cookies: the preview's code must never see a person's session."""
    kept = [p.strip() for p in cookie_header.split(";") if p.strip() and p.strip().partition("=")[0] not in names]
    return "; ".join(kept)


def original_request(headers: Mapping[str, str], host: str, site: PreviewSite, scheme: str) -> tuple[str, str] | None:
    """(scheme, host) of the request a proxy asks ghapp about, or None. Gateway API implementations (NGINX Gateway
    Fabric, Envoy Gateway) keep the visitor's Host: it is the preview host, and then nothing else is looked at, so a
    visitor's own `X-Original-URL` cannot move the decision to another preview. ingress-nginx's auth-url
    subrequest is addressed to ghapp and carries `X-Original-URL`, which nginx sets itself."""
    if environment_name_of(host, site) is not None:
        return scheme, host
    original = headers.get("X-Original-URL", "")
    try:
        parts = urllib.parse.urlsplit(original)
    except ValueError:
        return None
    if parts.scheme in ("http", "https") and parts.netloc and "@" not in parts.netloc:
        return parts.scheme, parts.netloc
    return None


class DecisionCache:
    """Whether a person (GitHub user id) may read a repository (id), remembered for `ttl` seconds (pure: the caller
    gives the clock, e.g. time.monotonic). At most `size` entries; the oldest are forgotten."""

    def __init__(self, clock: Callable[[], float], ttl: float = DECISION_TTL, size: int = 100_000) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._entries: OrderedDict[tuple[int, int], tuple[bool, float]] = OrderedDict()

    def get(self, user_id: int, repo_id: int) -> bool | None:
        entry = self._entries.get((user_id, repo_id))
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def forget(self, user_id: int, repo_id: int | None = None) -> None:
        """A person's decisions: all of them, or the one for `repo_id`."""
        for key in [k for k in self._entries if k[0] == user_id and repo_id in (None, k[1])]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def put(self, user_id: int, repo_id: int, readable: bool) -> None:
        self._entries.pop((user_id, repo_id), None)
        self._entries[(user_id, repo_id)] = (readable, self.clock() + self.ttl)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
