"""GitHub's clock in the tests: one for the fake GitHub's pull requests and for the deliveries derived from real
examples, so that their `updated_at` order is the order in which things happened, as it is on GitHub (ghapp
ignores a pull request state older than one it applied)."""

from __future__ import annotations

import datetime as dt
import itertools

EPOCH = dt.datetime(2019, 5, 16, tzinfo=dt.UTC)  # after every example delivery's own times
_ticks = itertools.count(1)


def tick() -> dt.datetime:
    """The next second of GitHub's clock: every event or change is later than the one before it."""
    return EPOCH + dt.timedelta(seconds=next(_ticks))


def stamp() -> str:
    """`tick()` as GitHub writes times (ISO 8601, `Z`)."""
    return tick().isoformat().replace("+00:00", "Z")
