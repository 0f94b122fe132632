"""The gateway's pure rules: where previews are published, which host names which preview, what may be proxied
to, which headers cross, and which redirects are rewritten."""

from __future__ import annotations

import pytest

from ghapp.config import ConfigError, Settings
from ghapp.core.gateway import (
    PreviewSite,
    end_to_end,
    environment_name_of,
    gateway_url,
    preview_site,
    request_headers,
    reserved_spelling,
    response_headers,
    rewrite_location,
    served_url,
    upgrade_requested,
    upstream_origin,
)

pytestmark = pytest.mark.fast

LOCAL = PreviewSite("http", "localhost", 8081)


@pytest.mark.parametrize(
    ("value", "https", "site"),
    [
        (None, False, LOCAL),
        (None, True, LOCAL),  # unset: the gateway itself, plain http on this machine
        ("", False, LOCAL),
        ("preview.example.com", True, PreviewSite("https", "preview.example.com")),
        ("Preview.Example.com/", True, PreviewSite("https", "preview.example.com")),
        ("preview.test:9000", False, PreviewSite("http", "preview.test", 9000)),
        ("localhost:9000", False, PreviewSite("http", "localhost", 9000)),
        ("dev.localhost", False, PreviewSite("http", "dev.localhost")),
    ],
)
def test_the_preview_domain_says_where_previews_are_published(value, https, site):
    assert preview_site(value, 8081, https) == site


@pytest.mark.parametrize(
    "value",
    [
        "https://preview.example.com",
        "preview..example.com",
        "-x.example.com",
        "a_b.example.com",
        "x.com:0",
        "x.com:http",
        "x.com/path",
        "user@x.com",
        "x.com:99999",
    ],
)
def test_a_malformed_preview_domain_is_refused(value):
    with pytest.raises(ValueError):
        preview_site(value, 8081)
    with pytest.raises(ConfigError, match="GHAPP_PREVIEW_DOMAIN"):
        Settings.from_env({"GHAPP_PREVIEW_DOMAIN": value}, dotenv=None)


def test_settings_read_the_gateway_port_and_domain():
    settings = Settings.from_env({"GHAPP_GATEWAY_PORT": "9001"}, dotenv=None)
    assert settings.gateway_port == 9001 and settings.preview_site == PreviewSite("http", "localhost", 9001)
    assert Settings.from_env({}, dotenv=None).gateway_port == 8081
    assert Settings.from_env({"GHAPP_GATEWAY_PORT": "0"}, dotenv=None).gateway_port == 0
    public = Settings.from_env(
        {"GHAPP_PREVIEW_DOMAIN": "preview.example.com", "GHAPP_PUBLIC_URL": "https://ghapp.example.com"}, dotenv=None
    )
    assert public.preview_site == PreviewSite("https", "preview.example.com")  # https, as ghapp itself is
    for bad in ("-1", "65536", "port"):
        with pytest.raises(ConfigError, match="GHAPP_GATEWAY_PORT"):
            Settings.from_env({"GHAPP_GATEWAY_PORT": bad}, dotenv=None)


def test_gateway_urls():
    assert gateway_url("pr-12-shop-7", LOCAL) == "http://pr-12-shop-7.localhost:8081/"
    assert gateway_url("pr-12-shop-7", PreviewSite("https", "preview.example.com")) == (
        "https://pr-12-shop-7.preview.example.com/"
    )
    assert served_url("pr-1-x-1", "http://127.0.0.1:20001/", LOCAL) == "http://pr-1-x-1.localhost:8081/"
    assert served_url("pr-1-x-1", "javascript:alert(1)", LOCAL) is None  # the gateway would not serve it
    assert served_url("pr-1-x-1", None, LOCAL) is None and served_url(None, "http://a/", LOCAL) is None


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("pr-1-shop-1.localhost:8081", "pr-1-shop-1"),
        ("PR-1-Shop-1.LOCALHOST:8081", "pr-1-shop-1"),
        ("pr-1-shop-1.localhost.:8081", "pr-1-shop-1"),
        ("pr-1-shop-1.localhost:08081", "pr-1-shop-1"),
        ("pr-1-shop-1.localhost", None),  # port 80: another origin, another server on that name
        ("pr-1-shop-1.localhost:8082", None),
        ("pr-1-shop-1.localhost:808100000", None),
        ("localhost:8081", None),
        ("a.b.localhost:8081", None),
        ("pr-1.localhost.evil.com", None),
        ("pr-1.localhostx", None),
        ("-pr.localhost", None),
        ("<script>.localhost", None),
        ("pr-1.localhost:80x", None),
        ("", None),
        (None, None),
    ],
)
def test_the_host_names_one_preview_or_none(host, name):
    assert environment_name_of(host, LOCAL) == name


@pytest.mark.parametrize(
    ("host", "site", "name"),
    [
        ("pr-1.p.example.com", PreviewSite("https", "p.example.com"), "pr-1"),
        ("pr-1.p.example.com:443", PreviewSite("https", "p.example.com"), "pr-1"),  # the default port, written
        ("pr-1.p.example.com:80", PreviewSite("https", "p.example.com"), None),
        ("pr-1.p.example.com:80", PreviewSite("http", "p.example.com"), "pr-1"),
        ("pr-1.p.example.com", PreviewSite("http", "p.example.com", 80), "pr-1"),
        ("pr-1.p.example.com:8443", PreviewSite("https", "p.example.com", 8443), "pr-1"),
        ("pr-1.p.example.com", PreviewSite("https", "p.example.com", 8443), None),
    ],
)
def test_the_published_port_is_part_of_the_host_and_the_default_port_may_be_left_out(host, site, name):
    assert environment_name_of(host, site) == name


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:20001/", "http://127.0.0.1:20001"),
        ("https://Preview.Example.com/app/", "https://preview.example.com"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("javascript:alert(1)", None),
        ("file:///etc/passwd", None),
        ("http://user:pw@127.0.0.1/", None),
        ("http:///nohost", None),
        ("http://127.0.0.1:99999/", None),
        ("http://a b/", None),
        ("http://a/\r\nX: y", None),
        (None, None),
    ],
)
def test_only_http_upstreams_with_a_host_are_proxied_to(url, origin):
    assert upstream_origin(url) == origin


def test_hop_by_hop_headers_never_cross():
    headers = [
        ("Connection", "keep-alive, X-Hop"),
        ("connection", "Upgrade"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "Expires"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("Proxy-Connection", "keep-alive"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Accept", "*/*"),
    ]
    assert end_to_end(headers) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Accept", "*/*")]


def test_the_client_cannot_say_who_it_is_or_where_it_came_from():
    sent = [
        ("Host", "pr-1.localhost:8081"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("x-forwarded-host", "evil"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("Expect", "100-continue"),
        ("Cookie", "session=1"),
    ]
    assert request_headers(sent, client_ip="10.0.0.5", proto="http", host="pr-1.localhost:8081") == [
        ("Cookie", "session=1"),
        ("X-Forwarded-For", "10.0.0.5"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "pr-1.localhost:8081"),
    ]


@pytest.mark.parametrize(
    ("location", "rewritten"),
    [
        ("http://127.0.0.1:20001/login?next=%2F#top", "http://pr-1.localhost:8081/login?next=%2F#top"),
        ("http://127.0.0.1:20001", "http://pr-1.localhost:8081/"),
        ("http://127.0.0.1:20002/other", "http://127.0.0.1:20002/other"),  # another port: not the upstream
        ("https://github.com/login", "https://github.com/login"),
        ("/relative", "/relative"),
        ("//127.0.0.1:20001/x", "//127.0.0.1:20001/x"),
    ],
)
def test_redirects_are_rewritten_only_when_they_name_the_upstreams_loopback_address(location, rewritten):
    assert rewrite_location(location, "http://127.0.0.1:20001", "http://pr-1.localhost:8081") == rewritten


def test_a_public_upstream_naming_itself_is_left_alone():
    location = "https://pr-1.preview.example.com/login"
    assert rewrite_location(location, "https://pr-1.preview.example.com", "https://pr-1.preview.example.com") == (
        location
    )


def test_a_preview_cannot_set_ghapps_own_cookies():
    answer = [
        ("Set-Cookie", "ghapp_preview=planted; Path=/; HttpOnly"),
        ("set-cookie", "__Host-ghapp_preview=x; Path=/; Secure"),
        ("Set-Cookie", " __Secure-ghapp_sign_in=x"),
        ("Set-Cookie", "ghapp_session=x; Domain=example.com"),
        ("Set-Cookie", "cart=3; Path=/"),
        ("Set-Cookie", "my_ghapp_preview=1"),  # not ghapp's
        ("Connection", "close"),
        ("X-Kept", "1"),
    ]
    assert response_headers(answer) == [
        ("Set-Cookie", "cart=3; Path=/"),
        ("Set-Cookie", "my_ghapp_preview=1"),
        ("X-Kept", "1"),
    ]


@pytest.mark.parametrize(
    ("method", "headers", "upgrade"),
    [
        ("GET", [("Connection", "Upgrade"), ("Upgrade", "websocket")], True),
        ("POST", [("connection", "keep-alive, upgrade"), ("upgrade", "h2c")], True),
        ("CONNECT", [], True),
        ("GET", [("Upgrade", "h2c")], False),  # without Connection: upgrade, a header like another
        ("GET", [("Connection", "upgrade")], False),
        ("GET", [], False),
    ],
)
def test_which_requests_ask_to_switch_protocols(method, headers, upgrade):
    assert upgrade_requested(method, headers) is upgrade


@pytest.mark.parametrize(
    ("path", "reserved"),
    [
        ("/_ghapp/signin", True),
        ("//_ghapp/signin", True),
        ("/./_ghapp/session?ticket=x", True),
        ("/x/../_ghapp/signin", True),
        ("/%2e%2e/_ghapp/signin", True),
        ("/%5Fghapp/signin", True),
        ("/_GHAPP/signin", True),
        ("/\\_ghapp/signin", True),
        ("/_ghapp", True),
        ("/", False),
        ("/app/_ghapp/x", False),
        ("/_ghapp_x/signin", False),
        ("/?next=/_ghapp/signin", False),
        ("/x/../../app", False),
    ],
)
def test_which_paths_a_previews_router_could_read_as_ghapps_pages(path, reserved):
    assert reserved_spelling(path) is reserved
