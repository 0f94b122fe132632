"""What a worker should do next for an environment, and when to retry: pure decisions on plain data."""

from __future__ import annotations

from ghapp.core.contract import Action, Desired
from ghapp.db.store import Environment


def next_action(env: Environment) -> Action | None:
    """The Terraform run that converges `env`; None when it converges without one (absent, never provisioned)."""
    if env.desired == Desired.PRESENT:
        return Action.APPLY
    return Action.DESTROY if env.provisioned else None


def retry_delay(attempts: int, base: float, cap: float, max_attempts: int) -> float | None:
    """Seconds until the next try after the `attempts`-th failure (capped exponential); None: stop retrying."""
    if attempts >= max_attempts:
        return None
    return min(cap, base * 2 ** (attempts - 1))
