"""Simulation: preview-hours saved by sleep in a week of 50 pull requests with office-hours traffic (pure, seconds).

  python -m bench.sleep_savings               # seed 1, sleep_after 15m 30m 1h 2h 4h
  python -m bench.sleep_savings --seeds 5     # the mean over 5 seeds

Minute by minute, each preview is put to sleep exactly when ghapp's rule says so (`ghapp.core.policy.should_sleep`,
the rule the sleeper's SQL applies), checked every minute (the sleeper's interval for sleep_after >= 20 minutes);
a request to a sleeping preview wakes it (the wake counts as a request) and a push wakes it too. Compared with the
same previews always on (open to close, what ghapp did before).

Assumptions (stated, not measured):
- one week, Monday 00:00 to Sunday 24:00, one time zone; office hours 09:00-18:00 Monday to Friday;
- 50 pull requests opened at uniformly random office-hour minutes of the five working days;
- each stays open 2 hours to 4 working days (uniform over office-hour time, then converted to wall time), or until
  the end of the week;
- while open, during office hours: review sessions arrive as a Poisson process of one per 2 hours per PR, each of
  1-20 requests over 1-15 minutes (a person clicking around); pushes arrive one per 3 hours per PR;
- outside office hours: a stray request (a bot, a link checker, someone at night) with probability 5 % per PR and
  night; no pushes;
- a wake and an apply take no time (they take about 2 s on terraform/local: bench/wake.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import random
import statistics

from bench._common import table
from ghapp.core.contract import Desired, Status
from ghapp.core.model import Environment
from ghapp.core.policy import should_sleep

MONDAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
WEEK = 7 * 24 * 60  # minutes
PRS = 50
OFFICE = range(9 * 60, 18 * 60)  # minutes of a day
SESSION_EVERY = 120  # minutes, per PR, office hours
PUSH_EVERY = 180
NIGHT_STRAY = 0.05
SLEEP_AFTER = (15, 30, 60, 120, 240)  # minutes


def office(minute: int) -> bool:
    day, of_day = divmod(minute, 24 * 60)
    return day < 5 and of_day in OFFICE


@dataclasses.dataclass
class PullRequest:
    opened: int
    closed: int
    requests: list[int]
    pushes: set[int]


def week(rng: random.Random) -> list[PullRequest]:
    office_minutes = [m for m in range(WEEK) if office(m)]
    prs = []
    for _ in range(PRS):
        start = rng.randrange(len(office_minutes))
        length = rng.randrange(120, 4 * len(OFFICE))  # office minutes it stays open
        opened = office_minutes[start]
        closed = office_minutes[start + length] if start + length < len(office_minutes) else WEEK
        requests: list[int] = []
        pushes: set[int] = set()
        for minute in range(opened, closed):
            if office(minute):
                if rng.random() < 1 / SESSION_EVERY:
                    span = rng.randint(1, 15)
                    requests += sorted(minute + rng.randrange(span) for _ in range(rng.randint(1, 20)))
                if rng.random() < 1 / PUSH_EVERY:
                    pushes.add(minute)
            elif minute % (24 * 60) == 3 * 60 and rng.random() < NIGHT_STRAY:  # once a night, at 03:00
                requests.append(minute)
        prs.append(PullRequest(opened, closed, [r for r in requests if r < closed], pushes))
    return prs


def simulate(pr: PullRequest, sleep_after: float) -> tuple[int, int]:
    """(awake minutes, wakes by a request) of one PR's preview under the sleep rule."""
    at = lambda minute: MONDAY + dt.timedelta(minutes=minute)  # noqa: E731
    env = Environment(
        id=1, repo_id=1, repository="o/r", pr_number=1, name="pr-1-r-1", installation_id=1, head_ref="h",
        author="a", title="t", pr_url="", is_fork=False, desired=Desired.PRESENT, desired_sha="s", generation=1,
        observed_generation=1, status=Status.ACTIVE, provisioned=True, deployed_sha="s", preview_url="u",
        outputs={}, progress=None, lease_owner=None, lease_until=None, attempts=0, next_attempt_at=None,
        last_error=None, created_at=at(pr.opened), updated_at=at(pr.opened), last_activity_at=at(pr.opened),
        expires_at=None,
    )  # fmt: skip
    requests = set(pr.requests)
    awake = wakes = 0
    for minute in range(pr.opened, pr.closed):
        now = at(minute)
        if minute in pr.pushes:  # a new commit: deployed awake
            env = dataclasses.replace(env, status=Status.ACTIVE, desired_sleeping=False, last_activity_at=now)
        if minute in requests:
            if env.status == Status.SLEEPING:
                wakes += 1
            env = dataclasses.replace(env, status=Status.ACTIVE, desired_sleeping=False, last_request_at=now)
        if should_sleep(env, sleep_after, now):
            env = dataclasses.replace(env, status=Status.SLEEPING, desired_sleeping=True)
        awake += env.status == Status.ACTIVE
    return awake, wakes


def main(seeds: int) -> None:
    results: dict[int, list[tuple[float, float, float, float]]] = {m: [] for m in SLEEP_AFTER}
    for seed in range(1, seeds + 1):
        prs = week(random.Random(seed))
        always = sum(pr.closed - pr.opened for pr in prs) / 60
        pr_days = always / 24
        for minutes in SLEEP_AFTER:
            awake = wakes = 0
            for pr in prs:
                a, w = simulate(pr, minutes * 60.0)
                awake += a
                wakes += w
            results[minutes].append((always, awake / 60, wakes / pr_days, wakes))
    rows = []
    for minutes, runs in results.items():
        always = statistics.mean(r[0] for r in runs)
        awake = statistics.mean(r[1] for r in runs)
        rows.append(
            [
                f"{minutes} min" + (" (default)" if minutes == 60 else ""),
                f"{always:.0f}",
                f"{awake:.0f}",
                f"{always - awake:.0f}",
                f"{100 * (always - awake) / always:.0f} %",
                f"{statistics.mean(r[2] for r in runs):.1f}",
            ]
        )
    print(f"{PRS} pull requests, one week, {seeds} seed(s)")
    print(
        table(
            [
                "sleep_after",
                "preview-hours always on",
                "preview-hours with sleep",
                "saved",
                "saved %",
                "wakes by a request per PR-day",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1)
    main(parser.parse_args().seeds)
