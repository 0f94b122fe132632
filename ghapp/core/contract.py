"""Names that operators, scripts and the dashboard rely on (DESIGN.md's contract)."""

import enum


class Status(enum.StrEnum):
    PENDING = "pending"
    CREATING = "creating"
    ACTIVE = "active"
    SLEEPING = "sleeping"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


class Desired(enum.StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


class Hold(enum.StrEnum):
    """Why a wanted preview is held back (`environments.hold`)."""

    SKIPPED = "skipped"  # a rule of `.github/preview.yml` says no preview (draft, label, branch, paths, manual)
    WAITING = "waiting"  # `wait_for` checks have not succeeded on the commit yet
    INVALID = "invalid"  # the configuration file is broken
    QUEUED = "queued"  # beyond the repository's `max_previews`


class Access(enum.StrEnum):
    PUBLIC = "public"
    REPOSITORY = "repository"  # GitHub sign-in; only people who can read the repository


class Action(enum.StrEnum):
    APPLY = "apply"
    DESTROY = "destroy"


class RunState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"


CHECK_RUN_NAME = "Preview environment"
CONFIG_PATH = ".github/preview.yml"
COMMENT_MARKER = "<!-- ghapp:preview -->"
NOTIFY_CHANNEL = "ghapp_environments"  # an environment changed (payload: its id)
COMMANDS_CHANNEL = "ghapp_commands"  # a command was queued


def environment_name(environment_id: int, repository: str, pr_number: int) -> str:
    """DNS-safe, unique name, also the Terraform workspace: `pr-<n>-<repo>-<id>`, at most 63 characters."""
    repo = repository.rsplit("/", 1)[-1].lower()
    slug = "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in repo).split())
    suffix = f"-{environment_id}"
    head = f"pr-{pr_number}-{slug}" if slug else f"pr-{pr_number}"
    return head[: 63 - len(suffix)].rstrip("-") + suffix


def short_sha(sha: str | None) -> str:
    """The 7-character form people read."""
    return (sha or "")[:7]
