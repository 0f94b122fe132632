"""The preview gateway's rules (pure): where a preview is published (`<environment_name>.<preview domain>`), which
host names a preview, which upstream may be proxied to, and which headers cross the proxy."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Iterable

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Hop-by-hop headers (RFC 9110 7.6.1), plus the ones RFC 2616 listed and proxies still drop: never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"})
# What a client must not be able to say about itself: the gateway states these (X-Forwarded-*), or they are about
# the gateway's own hop (Expect: the gateway answered `100 Continue` itself).
CLIENT_CLAIMS = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"})
_NOT_FORWARDED = frozenset({"host", "expect"})
# ghapp's own cookies (the preview session `ghapp_preview`, the sign-in's `ghapp_sign_in`, the dashboard's
# `ghapp_session`), with or without a `__Host-`/`__Secure-` prefix: a preview never sets them.
_OWN_COOKIE = re.compile(r"\s*(?:__host-|__secure-)?ghapp_", re.IGNORECASE)
RESERVED_SEGMENT = "_ghapp"  # ghapp's own pages on every preview host: `/_ghapp/...`


@dataclasses.dataclass(frozen=True)
class PreviewSite:
    """Where previews are published: `<scheme>://<environment_name>.<domain>[:<port>]/`."""

    scheme: str
    domain: str
    port: int | None = None  # None: the scheme's default port

    @property
    def suffix(self) -> str:
        """`domain[:port]` as it follows the environment name in a URL."""
        return f"{self.domain}:{self.port}" if self.port else self.domain


def preview_site(value: str | None, gateway_port: int, https: bool = False) -> PreviewSite:
    """GHAPP_PREVIEW_DOMAIN (`preview.example.com`, `localhost:9000`) → where previews are published. Unset: the
    gateway itself, `http://<name>.localhost:<gateway port>/` (browsers and curl resolve `*.localhost` to loopback).
    Set, the scheme is not part of it: https when ghapp itself is (`https`: GHAPP_PUBLIC_URL is), as its sign-in
    cookies are. ValueError names what is wrong."""
    if value is None or not value.strip():
        return PreviewSite("http", "localhost", gateway_port or None)
    scheme = "https" if https else "http"
    text = value.strip().lower().rstrip("/")
    if "://" in text:
        raise ValueError(
            f"{value.strip()!r}: give the domain (and port) only; previews use https when GHAPP_PUBLIC_URL does"
        )
    host, _, port_text = text.partition(":")
    if not _DOMAIN.fullmatch(host) or ".." in host or any(not _LABEL.fullmatch(p) for p in host.split(".")):
        raise ValueError(f"{value.strip()!r} is not a domain name (e.g. preview.example.com, or localhost:8081)")
    port = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise ValueError(f"{port_text!r} is not a TCP port")
        port = int(port_text)
    return PreviewSite(scheme, host, port)


def gateway_url(environment_name: str, site: PreviewSite) -> str:
    """The URL people use to reach a preview through the gateway."""
    return f"{site.scheme}://{environment_name}.{site.suffix}/"


def served_url(environment_name: str | None, preview_url: str | None, site: PreviewSite) -> str | None:
    """The gateway URL of a preview the gateway can serve (it has a name and an http(s) `preview_url`), else None:
    what the pull request, the dashboard and the API show people."""
    if not environment_name or upstream_origin(preview_url) is None:
        return None
    return gateway_url(environment_name, site)


def environment_name_of(host: str | None, site: PreviewSite) -> str | None:
    """The environment a host names (`<name>.<domain>` at the published port), or None. The one rule for every host
    ghapp is shown: the gateway's `Host`, a proxy's original request, a sign-in's return URL, a request's `Origin`.
    Case and a trailing dot are spelling (DNS reads them alike); the port is not: another port is another origin to
    browsers and another server on the same name (on one machine, `*.localhost` is every local port, a preview's
    own process included), so a sign-in must never hand a ticket there, and a session made for it is no preview's.
    The scheme's default port may be written or left out. Only one DNS label comes out of here, so nothing a client
    sends beyond letters, digits and hyphens ever does."""
    if not host:
        return None
    hostname, _, port = host.strip().lower().partition(":")
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return None
    default = _DEFAULT_PORTS.get(site.scheme)
    if (int(port) if port else default) != (site.port or default):
        return None
    label, dot, rest = hostname.removesuffix(".").partition(".")
    if not dot or rest != site.domain or not _LABEL.fullmatch(label):
        return None
    return label


def upstream_origin(preview_url: str | None) -> str | None:
    """The origin (`http://127.0.0.1:8123`) the gateway proxies to: only an http(s) `preview_url` that the module
    output, with a host and no credentials; anything else is never proxied."""
    if not preview_url or any(c in preview_url for c in "\r\n\t\x00 "):
        return None
    try:
        parts = urllib.parse.urlsplit(preview_url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port else "")


def is_loopback_origin(origin: str) -> bool:
    host = urllib.parse.urlsplit(origin).hostname or ""
    return host in ("localhost", "::1") or re.fullmatch(r"127(\.\d{1,3}){3}", host) is not None


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers that cross a proxy: without the hop-by-hop ones (RFC 9110 7.6.1: Connection and every header it
    names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade) and without Proxy-* (Proxy-Authorization is for
    the gateway, never for the preview)."""
    headers = list(headers)
    drop = HOP_BY_HOP | _connection_tokens(headers)
    return [(n, v) for n, v in headers if n.lower() not in drop and not n.lower().startswith("proxy-")]


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """What of a preview's answer crosses to the visitor: its end-to-end headers, less a `Set-Cookie` for one of
    ghapp's own cookies (HttpOnly, so the preview's scripts cannot touch them; its answer could replace or end a
    visitor's session with ghapp)."""
    return [(n, v) for n, v in end_to_end(headers) if n.lower() != "set-cookie" or not _OWN_COOKIE.match(v)]


def upgrade_requested(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether an HTTP/1.1 parser takes the rest of the connection for another protocol after this request's head
    (`Connection: upgrade` with an `Upgrade` header, or CONNECT): unless the upgrade happens (a WebSocket the gateway
    bridges), the connection must close after the answer, as its next bytes are not read as requests."""
    headers = list(headers)
    offered = any(name.lower() == "upgrade" for name, _value in headers)
    return method.upper() == "CONNECT" or (offered and "upgrade" in _connection_tokens(headers))


def reserved_spelling(raw_path: str) -> bool:
    """Whether a request target would name one of ghapp's `/_ghapp/` pages to a preview's router, which may decode
    percent-escapes, merge slashes, resolve dot segments and ignore case: such a path is ghapp's, never the
    preview's (the gateway serves `/_ghapp/...` spelled plainly itself; any other spelling is refused)."""
    path = urllib.parse.unquote(raw_path.partition("?")[0]).replace("\\", "/")
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return bool(segments) and segments[0].lower() == RESERVED_SEGMENT


def request_headers(
    headers: Iterable[tuple[str, str]], *, client_ip: str, proto: str, host: str
) -> list[tuple[str, str]]:
    """What the upstream receives: the client's end-to-end headers, without what the client may not claim, and
    the gateway's own `X-Forwarded-For/Proto/Host`. X-Forwarded-For is replaced, not appended to: the gateway is
    the first hop it trusts, so a chain the client sent would be the client's word. Host is the upstream's own
    (as nginx's `proxy_pass` does); the host the client asked for is X-Forwarded-Host."""
    kept = [
        (n, v) for n, v in end_to_end(headers) if n.lower() not in CLIENT_CLAIMS and n.lower() not in _NOT_FORWARDED
    ]
    return [*kept, ("X-Forwarded-For", client_ip), ("X-Forwarded-Proto", proto), ("X-Forwarded-Host", host)]


def rewrite_location(location: str, upstream: str, public_origin: str) -> str:
    """An upstream's redirect passes untouched, unless it names the upstream's own loopback address (a preview
    that redirects to `http://127.0.0.1:8123/login`): that becomes the gateway's host, which people can reach."""
    if not is_loopback_origin(upstream) or upstream_origin(location) != upstream:
        return location
    parts = urllib.parse.urlsplit(location)
    rest = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
    return public_origin + rest
