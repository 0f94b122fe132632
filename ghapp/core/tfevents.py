"""Terraform's `-json` machine-readable UI stream, turned into log lines, progress and outputs (pure)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass
class Progress:
    """What a run has done so far, for the reporter: resources done / total, the current one, outputs, errors."""

    total: int | None = None
    done: int = 0
    current: str | None = None
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    _in_flight: list[str] = dataclasses.field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "current": self.current}

    def feed(self, event: dict[str, Any]) -> bool:
        """Update from one event; True if done/total/current changed."""
        kind = event.get("type")
        before = (self.total, self.done, self.current)
        if kind == "change_summary" and (event.get("changes") or {}).get("operation") == "plan":
            changes = event["changes"]
            self.total = sum(int(changes.get(k) or 0) for k in ("add", "change", "remove"))
        elif kind == "apply_start":
            addr = _resource_addr(event)
            if addr:
                self._in_flight.append(addr)
                self.current = addr
        elif kind in ("apply_complete", "apply_errored"):
            addr = _resource_addr(event)
            if addr in self._in_flight:
                self._in_flight.remove(addr)
            if kind == "apply_complete":
                self.done += 1
            self.current = self._in_flight[-1] if self._in_flight else None
        elif kind == "outputs":
            outputs = event.get("outputs") or {}
            if any("value" in o for o in outputs.values()):
                self.outputs = {k: o.get("value") for k, o in outputs.items() if not o.get("sensitive")}
        elif kind == "diagnostic" and event.get("diagnostic", {}).get("severity") == "error":
            diag = event["diagnostic"]
            self.errors.append(" ".join(filter(None, [diag.get("summary"), diag.get("detail")])).strip())
        return (self.total, self.done, self.current) != before


def _resource_addr(event: dict[str, Any]) -> str | None:
    hook = event.get("hook") or {}
    return (hook.get("resource") or {}).get("addr")


def parse_line(raw: str) -> tuple[str, dict[str, Any] | None]:
    """One line of Terraform's output → (the line a person reads, the event or None if not JSON)."""
    raw = raw.rstrip("\r\n")
    if not raw.startswith("{"):
        return raw, None
    try:
        event = json.loads(raw)
    except ValueError:
        return raw, None
    if not isinstance(event, dict):
        return raw, None
    message = str(event.get("@message", ""))
    if event.get("type") == "diagnostic":
        diag = event.get("diagnostic") or {}
        level = str(diag.get("severity", "")).capitalize()
        detail = diag.get("detail")
        message = f"{level}: {diag.get('summary', message)}" + (f"\n{detail}" if detail else "")
    return message, event
