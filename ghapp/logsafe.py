"""Log lines that user input cannot forge: control characters (newlines, escapes, bidi overrides) in a message
are shown escaped, so a branch name or an error text cannot start a fake log line or recolour a terminal."""

from __future__ import annotations

import logging
import re

# C0 and C1 controls, DEL, and the Unicode line separators and bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_NEWLINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """`text` with control characters written as escapes (pure)."""
    return (_CONTROL_KEEP_NEWLINES if keep_newlines else _CONTROL).sub(_escape, text)


class SafeFormatter(logging.Formatter):
    """A formatter whose message is one line of printable text; tracebacks keep their own newlines only."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return escape_controls(super().formatException(ei), keep_newlines=True)
