"""Parsing `/preview ...` comment commands (pure)."""

from __future__ import annotations

import dataclasses
import re

COMMANDS = ("deploy", "redeploy", "destroy", "help")
MAX_BODY = 65_536  # GitHub's own limit for a comment; anything longer is not a comment we act on
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_COMMAND = re.compile(r"^(?ai:/preview)(?![^\s])[ \t]*(\S*)", re.M)  # ASCII case-insensitive: no /prevıew
_SAFE = re.compile(r"[^a-z0-9_-]")


@dataclasses.dataclass(frozen=True)
class Parsed:
    command: str  # one of COMMANDS
    unknown: str | None = None  # the word given when it was not a command (answered with help)


def parse_command(body: str) -> Parsed | None:
    """The first `/preview <command>` at the start of a line, outside code blocks; None if there is none."""
    if not isinstance(body, str) or len(body) > MAX_BODY:
        return None
    match = _COMMAND.search(_FENCE.sub("", body.replace("\r\n", "\n")))
    if match is None:
        return None
    word = (match.group(1) or "help").lower()  # Unicode folding is harmless here: only ASCII words match
    return Parsed(word) if word in COMMANDS else Parsed("help", unknown=_SAFE.sub("", word)[:32] or "?")
