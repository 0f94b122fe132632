"""Who may see a preview, the pure part: the verdict, the return URLs a sign-in accepts (no open redirect), what a
request carries, the headers a preview may see, the decision cache, and the operator's default."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ghapp.app_manifest import load_manifest
from ghapp.config import ConfigError, Settings
from ghapp.core.access import (
    DecisionCache,
    Facts,
    Verdict,
    bounded_access,
    cookie_value,
    effective_access,
    looser_refused,
    original_request,
    presented_token,
    preview_target,
    session_cookie,
    verdict,
    wants_page,
    without_cookie,
)
from ghapp.core.contract import Access
from ghapp.core.gateway import PreviewSite
from ghapp.db.access import CHANNEL
from ghapp.gateway.access import AccessControl, forwarded_headers, valid_repository
from tests.support import ROOT

pytestmark = pytest.mark.fast

SITE = PreviewSite("http", "localhost", 8081)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (Facts(Access.PUBLIC, sign_in_configured=False), Verdict.ALLOW),
        (Facts(Access.PUBLIC, sign_in_configured=True, token_valid=False), Verdict.ALLOW),
        (Facts(Access.REPOSITORY, sign_in_configured=True), Verdict.SIGN_IN),
        (Facts(Access.REPOSITORY, sign_in_configured=False), Verdict.UNAVAILABLE),
        (Facts(Access.REPOSITORY, sign_in_configured=True, session_readable=True), Verdict.ALLOW),
        (Facts(Access.REPOSITORY, sign_in_configured=True, session_readable=False), Verdict.DENY),
        (Facts(Access.REPOSITORY, sign_in_configured=False, token_valid=True), Verdict.ALLOW),
        # a wrong token is refused, never traded for a sign-in (or a session sent along)
        (Facts(Access.REPOSITORY, sign_in_configured=True, token_valid=False, session_readable=True), Verdict.DENY),
    ],
)
def test_verdict(facts, expected):
    decided, reason = verdict(facts)
    assert decided is expected and reason


def test_the_repository_decides_else_the_operator():
    assert effective_access(None, Access.REPOSITORY) is Access.REPOSITORY
    assert effective_access(Access.PUBLIC, Access.REPOSITORY) is Access.PUBLIC
    assert effective_access(Access.REPOSITORY, Access.PUBLIC) is Access.REPOSITORY


def test_operator_default_is_repository_once_sign_in_is_configured():
    assert Settings().default_access is Access.PUBLIC
    signed = Settings.from_env({"GITHUB_CLIENT_ID": "Iv23li0", "GITHUB_CLIENT_SECRET": "s" * 40}, dotenv=None)
    assert signed.default_access is Access.REPOSITORY
    explicit = Settings.from_env({"GHAPP_ACCESS": "public", "GITHUB_CLIENT_ID": "a", "GITHUB_CLIENT_SECRET": "b"})
    assert explicit.default_access is Access.PUBLIC


def test_access_settings_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="GHAPP_ACCESS must be public or repository"):
        Settings.from_env({"GHAPP_ACCESS": "private"}, dotenv=None)
    with pytest.raises(ConfigError, match="needs GitHub sign-in"):
        Settings.from_env({"GHAPP_ACCESS": "repository"}, dotenv=None).check_serve()
    with pytest.raises(ConfigError, match="go together"):
        Settings.from_env({"GITHUB_CLIENT_ID": "Iv23li0"}, dotenv=None).check_serve()


def test_preview_domain_defaults_to_localhost_on_the_gateway_port():
    assert Settings().gateway_domain == "localhost:8081"
    assert Settings(gateway_port=9000).gateway_domain == "localhost:9000"
    assert Settings(preview_domain="Preview.Example.com").gateway_domain == "preview.example.com"


def test_a_preview_url_is_a_sign_in_target():
    target = preview_target("http://pr-12-web-3.localhost:8081/cart?item=2", SITE)
    assert target is not None
    assert (target.scheme, target.host, target.name, target.path) == (
        "http",
        "pr-12-web-3.localhost:8081",
        "pr-12-web-3",
        "/cart?item=2",
    )
    assert target.at("/_ghapp/session") == "http://pr-12-web-3.localhost:8081/_ghapp/session"
    assert preview_target("http://pr-1-x-2.localhost:8081", SITE).path == "/"
    # ghapp's own pages are never where a sign-in returns to
    assert preview_target("http://pr-1-x-2.localhost:8081/_ghapp/session?ticket=x", SITE).path == "/"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/",
        "http://pr-1-x-2.localhost:8081.evil.example/",
        "http://evil.example/?http://pr-1-x-2.localhost:8081/",
        "http://user@pr-1-x-2.localhost:8081/",
        "http://evil.example\\@pr-1-x-2.localhost:8081/",
        "//pr-1-x-2.localhost:8081/",
        "javascript:alert(1)//pr-1-x-2.localhost:8081",
        "http://pr-1-x-2.localhost:8081//evil.example/",
        "http://pr-1-x-2.localhost:8081/\r\nSet-Cookie: x=1",
        "http://pr-1-x-2.localhost:99999/",
        # another port of the same name is another server (on one machine, any local process, a preview's own):
        # the ticket a sign-in hands there would become a session for that host
        "http://pr-1-x-2.localhost:6666/",
        "http://pr-1-x-2.localhost/",
        "http://localhost:8081/",
        "",
    ],
)
def test_anything_else_is_no_sign_in_target(url):
    assert preview_target(url, SITE) is None


def test_an_https_ghapp_returns_only_to_https_previews():
    assert (
        preview_target("http://pr-1-x-2.p.example.com/", PreviewSite("https", "p.example.com"), https_only=True) is None
    )
    assert (
        preview_target("https://pr-1-x-2.p.example.com/", PreviewSite("https", "p.example.com"), https_only=True)
        is not None
    )


def test_presented_token():
    assert presented_token({"X-Ghapp-Access-Token": "ghpa_abc"}) == "ghpa_abc"
    assert presented_token({"Authorization": "Bearer ghpa_abc"}) == "ghpa_abc"
    assert presented_token({"Authorization": "bearer ghpa_abc"}) == "ghpa_abc"
    # the preview's own credentials are not ghapp's business
    assert presented_token({"Authorization": "Bearer eyJhbGciOi.x.y"}) is None
    assert presented_token({"Authorization": "Basic Z2hwYV9hYmM="}) is None
    assert presented_token({}) is None


def test_wants_page():
    assert wants_page("GET", "text/html,application/xhtml+xml,*/*;q=0.8")
    assert not wants_page("GET", "application/json")
    assert not wants_page("POST", "text/html")


def test_cookies():
    header = "theme=dark; ghapp_preview=abc123; cart=1"
    assert cookie_value(header, "ghapp_preview") == "abc123"
    assert cookie_value(header, "ghapp_prev") is None
    assert without_cookie(header, "ghapp_preview") == "theme=dark; cart=1"
    assert without_cookie("ghapp_preview=abc", "ghapp_preview") == ""
    assert (
        without_cookie("a=1; __Host-ghapp_preview=x; ghapp_preview=y", "ghapp_preview", "__Host-ghapp_preview") == "a=1"
    )
    assert session_cookie(https=True) == "__Host-ghapp_preview" and session_cookie(https=False) == "ghapp_preview"


def test_the_preview_never_sees_ghapps_cookie_or_token():
    headers = [
        ("Host", "pr-1-x-2.localhost:8081"),
        ("Cookie", "ghapp_preview=secret-session; theme=dark; __Host-ghapp_preview=secret-too"),
        ("X-Ghapp-Access-Token", "ghpa_secret"),
        ("Accept", "text/html"),
    ]
    from multidict import CIMultiDict

    kept = forwarded_headers(CIMultiDict(headers))
    assert kept == [("Host", "pr-1-x-2.localhost:8081"), ("Cookie", "theme=dark"), ("Accept", "text/html")]
    assert forwarded_headers(CIMultiDict([("Authorization", "Bearer ghpa_x")])) == []
    own = CIMultiDict([("Authorization", "Bearer the-previews-own"), ("Cookie", "ghapp_preview=s")])
    assert forwarded_headers(own) == [("Authorization", "Bearer the-previews-own")]


def test_original_request_as_each_controller_sends_it():
    domain = PreviewSite("https", "p.example.com")
    nginx = {"X-Original-URL": "https://pr-1-x-2.p.example.com/a?b=1"}
    assert original_request(nginx, "ghapp.ghapp.svc", domain, "http") == ("https", "pr-1-x-2.p.example.com")
    # Gateway API: the visitor's Host is kept, and a visitor's own X-Original-URL is ignored then
    gateway = {"X-Original-URL": "https://pr-9-mine-9.p.example.com/"}
    assert original_request(gateway, "pr-1-x-2.p.example.com", domain, "https") == ("https", "pr-1-x-2.p.example.com")
    assert original_request({}, "ghapp.ghapp.svc", domain, "http") is None
    assert original_request({"X-Original-URL": "http://u@pr-1-x-2.p.example.com/"}, "ghapp", domain, "http") is None


def test_decision_cache_forgets_after_its_ttl_and_beyond_its_size():
    now = [0.0]
    cache = DecisionCache(lambda: now[0], ttl=300, size=2)
    cache.put(1, 10, True)
    cache.put(2, 10, False)
    assert cache.get(1, 10) is True and cache.get(2, 10) is False and cache.get(1, 11) is None
    now[0] = 301
    assert cache.get(1, 10) is None
    cache.put(1, 10, True)
    cache.put(1, 11, True)
    cache.put(3, 10, True)  # over the size: the oldest goes
    assert cache.get(1, 10) is None and cache.get(1, 11) is True and cache.get(3, 10) is True


def test_valid_repository():
    assert valid_repository("acme/web-app.v2")
    for bad in ("acme", "acme/web/x", "/web", "acme/", "acme/wéb", None, 3, "a" * 201 + "/b"):
        assert not valid_repository(bad)


def test_the_manifest_names_the_sign_in_callback():
    manifest = load_manifest(ROOT / "app.yml", "https://ghapp.example.com", "http://127.0.0.1:9/setup/callback")
    assert manifest["callback_urls"] == ["https://ghapp.example.com/gateway/callback"]


@pytest.mark.parametrize(
    ("head", "base", "bounded"),
    [
        (None, None, None),  # nobody said: the operator's default
        (Access.PUBLIC, None, None),  # the pull request cannot lift the operator's default
        (Access.PUBLIC, Access.REPOSITORY, Access.REPOSITORY),  # nor the maintainers' file
        (None, Access.REPOSITORY, Access.REPOSITORY),  # dropping the key (or the file) does not loosen it
        (Access.REPOSITORY, None, Access.REPOSITORY),  # tightening is the pull request's to do
        (Access.REPOSITORY, Access.PUBLIC, Access.REPOSITORY),
        (Access.PUBLIC, Access.PUBLIC, Access.PUBLIC),
        (None, Access.PUBLIC, Access.PUBLIC),
    ],
)
def test_a_pull_requests_access_is_the_base_branchs_or_stricter(head, base, bounded):
    assert bounded_access(head, base) is bounded


def test_a_refused_public_is_told_to_the_pull_request():
    assert looser_refused(Access.PUBLIC, Access.REPOSITORY) == (
        "access: public in this pull request takes effect once merged (until then: repository)"
    )
    assert looser_refused(Access.PUBLIC, Access.PUBLIC) is None
    assert looser_refused(None, Access.REPOSITORY) is None
    assert looser_refused(Access.REPOSITORY, Access.REPOSITORY) is None


async def test_a_session_read_while_it_is_being_ended_is_not_cached():
    """A lookup that began before a revocation was heard may return the row the revocation deleted: it answers its
    own request, but is not kept (else the ended session would live on here for the cache's TTL)."""
    started, release = asyncio.Event(), asyncio.Event()
    reads = []

    class Connection:
        async def fetchrow(self, *_args):
            reads.append(1)
            started.set()
            await release.wait()
            return {"host": "h", "repo_id": 1, "user_id": 7, "login": "alice"}

    class Pool:
        @contextlib.asynccontextmanager
        async def acquire(self):
            yield Connection()

    control = AccessControl(Settings(), Pool(), session=None)  # type: ignore[arg-type]
    lookup = asyncio.create_task(control._person("s" * 32, "h"))
    await started.wait()
    control._notified(None, 0, CHANNEL, "user 7")  # alice's sessions ended through another replica
    release.set()
    assert (await lookup).login == "alice"
    await control._person("s" * 32, "h")
    assert len(reads) == 2, "the session read before the revocation was cached"
