"""Parsing `/preview ...` comment commands (pure)."""

from __future__ import annotations

import dataclasses
import re

COMMANDS = ("deploy", "redeploy", "destroy", "sleep", "wake", "keep", "help")
KEEP_OFF = "keep off"  # `/preview keep off`: the undo of `keep`, a command of its own
MAX_BODY = 65_536  # GitHub's own limit for a comment; anything longer is not a comment we act on
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
# ASCII case-insensitive: no /prevıew. The word, then (for deploy) an optional argument on the same line.
_COMMAND = re.compile(r"^(?ai:/preview)(?![^\s])[ \t]*(\S*)(?:[ \t]+(\S+))?", re.M)
_SAFE = re.compile(r"[^a-z0-9_-]")
SHA_ARGUMENT = re.compile(r"[0-9a-f]{7,40}")  # a full or abbreviated commit SHA, as people paste them


@dataclasses.dataclass(frozen=True)
class Parsed:
    command: str  # one of COMMANDS, or KEEP_OFF
    unknown: str | None = None  # the word not understood: a command (answered with help), or deploy's argument
    sha: str | None = None  # `/preview deploy <sha>`: the commit named, lower case, 7 to 40 hex characters


def parse_command(body: str) -> Parsed | None:
    """The first `/preview <command>` at the start of a line, outside code blocks; None if there is none.
    `/preview deploy <sha>` names the commit to deploy; an argument that is not a SHA is kept (made safe) in
    `unknown` so the reply can say so. `/preview keep off` is KEEP_OFF; other commands ignore an argument."""
    if not isinstance(body, str) or len(body) > MAX_BODY:
        return None
    match = _COMMAND.search(_FENCE.sub("", body.replace("\r\n", "\n")))
    if match is None:
        return None
    word = (match.group(1) or "help").lower()  # Unicode folding is harmless here: only ASCII words match
    if word not in COMMANDS:
        return Parsed("help", unknown=_safe(word))
    argument = match.group(2)
    if word == "keep" and argument is not None and argument.lower() == "off":
        return Parsed(KEEP_OFF)
    if word != "deploy" or argument is None:
        return Parsed(word)
    if argument.isascii() and SHA_ARGUMENT.fullmatch(argument.lower()):
        return Parsed(word, sha=argument.lower())
    return Parsed(word, unknown=_safe(argument.lower()))


def _safe(word: str) -> str:
    return _SAFE.sub("", word)[:32] or "?"
