"""Reading webhook payloads defensively: a missing or mistyped field is a `MalformedPayload` (HTTP 400)."""

from __future__ import annotations

from typing import Any, Literal, overload


class MalformedPayload(ValueError):
    pass


def field(data: Any, path: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """`field(payload, "pull_request.head.sha", str)`; `optional` allows a missing key or null."""
    value = data
    for key in path.split("."):
        if not isinstance(value, dict):
            raise MalformedPayload(f"{path}: expected an object above {key!r}")
        value = value.get(key)
        if value is None:
            if optional:
                return None
            raise MalformedPayload(f"{path} is missing")
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise MalformedPayload(f"{path} has the wrong type")
    if not isinstance(value, kind):
        raise MalformedPayload(f"{path} has the wrong type")
    return value


def text(data: Any, path: str, *, limit: int = 1000, optional: bool = False) -> str:
    """A string field made safe to store: NUL and unpaired surrogates removed, cut to `limit` characters."""
    value: str | None = field(data, path, str, optional=optional)
    if value is None:
        return ""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:limit]


@overload
def integer(data: Any, path: str, *, bits: int = 63, optional: Literal[False] = False) -> int: ...
@overload
def integer(data: Any, path: str, *, bits: int = 63, optional: bool) -> int | None: ...
def integer(data: Any, path: str, *, bits: int = 63, optional: bool = False) -> int | None:
    """A positive integer that fits the database column (`bits`: 31 for integer, 63 for bigint)."""
    value: int | None = field(data, path, int, optional=optional)
    if value is not None and not 0 < value < 2**bits:
        raise MalformedPayload(f"{path} is out of range")
    return value
