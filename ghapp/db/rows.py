"""Database rows → the domain model."""

from __future__ import annotations

import dataclasses
import json

import asyncpg

from ghapp.core.contract import Access, Desired, Hold, Status
from ghapp.core.model import Environment

_FIELDS = frozenset(f.name for f in dataclasses.fields(Environment))
_JSON = ("outputs", "progress", "published", "config")


def seconds_due(seconds: float | None) -> float | None:
    """A "seconds until due" read from the database: None (nothing due) stays None, the past is 0. Clamped here, not
    with GREATEST(0, ...) in SQL: PostgreSQL's GREATEST(0, NULL) is 0, which made "nothing due" read "due now"."""
    return None if seconds is None else max(0.0, seconds)


def to_environment(record: asyncpg.Record) -> Environment:
    values = {k: v for k, v in record.items() if k in _FIELDS}
    for key in _JSON:
        if isinstance(values.get(key), str):
            values[key] = json.loads(values[key])
    values["status"] = Status(values["status"])
    values["desired"] = Desired(values["desired"])
    if values.get("hold") is not None:
        values["hold"] = Hold(values["hold"])
    if values.get("access") is not None:
        values["access"] = Access(values["access"])
    if values.get("labels") is not None:
        values["labels"] = list(values["labels"])
    return Environment(**values)


def maybe_environment(record: asyncpg.Record | None) -> Environment | None:
    return to_environment(record) if record is not None else None
