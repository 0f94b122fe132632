"""When a preview is deployed: the rules of `.github/preview.yml` (pure), each rule alone, and the check states."""

from __future__ import annotations

import pytest

from ghapp.core.contract import Hold
from ghapp.core.repoconfig import RepoConfig
from ghapp.core.rules import (
    MANUAL_REASON,
    Check,
    CheckState,
    PullFacts,
    check_of_run,
    check_of_status,
    checks_by_name,
    held_by_checks,
    held_by_paths,
    held_by_pull,
    matches_branch,
    path_selected,
    resolve_again,
)

pytestmark = pytest.mark.fast  # no PostgreSQL, Terraform or server: `pytest -m fast`

SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
FACTS = PullFacts(head_ref="changes", base_ref="main")


def test_no_configuration_holds_nothing():
    assert held_by_pull(RepoConfig(), PullFacts(draft=True, labels=("wip",), head_ref="dependabot/x")) is None
    assert held_by_paths(RepoConfig(), ["README.md"]) is None
    assert held_by_checks((), SHA, {}) is None


def test_manual_deploys_only_on_request():
    config = RepoConfig(deploy="manual")
    held = held_by_pull(config, FACTS)
    assert held is not None and (held.hold, held.reason) == (Hold.SKIPPED, MANUAL_REASON)
    assert held.reason == "deploy: manual — comment /preview deploy or press Deploy"
    assert held_by_pull(config, PullFacts(deploy_requested=True)) is None


def test_drafts():
    draft = PullFacts(draft=True)
    held = held_by_pull(RepoConfig(drafts=False), draft)
    assert held is not None and held.hold is Hold.SKIPPED and "draft" in held.reason
    assert held_by_pull(RepoConfig(drafts=True), draft) is None
    assert held_by_pull(RepoConfig(drafts=False), PullFacts(draft=False)) is None


@pytest.mark.parametrize(
    ("pattern", "branch", "matches"),
    [
        ("dependabot/**", "dependabot/npm_and_yarn/lodash-4.17.21", True),
        ("dependabot/**", "dependabot", False),
        ("dependabot/**", "feature/dependabot/x", False),
        ("release-*", "release-1.2", True),
        ("release-*", "release-1/hotfix", False),
        ("renovate/*", "renovate/lodash", True),
        ("**/wip", "me/topic/wip", True),
        ("**/wip", "wip", True),
        ("docs", "docs", True),
        ("docs", "docs-2", False),
        ("fix-?", "fix-1", True),
        ("a.b", "aXb", False),  # not a regular expression
    ],
)
def test_branch_globs(pattern, branch, matches):
    assert matches_branch(pattern, branch) is matches


def test_branches_ignore():
    config = RepoConfig(branches_ignore=("dependabot/**",))
    held = held_by_pull(config, PullFacts(head_ref="dependabot/pip/requests-2.32"))
    assert held is not None and held.hold is Hold.SKIPPED
    assert held.reason == "branch dependabot/pip/requests-2.32 matches branches.ignore dependabot/**"
    assert held_by_pull(config, PullFacts(head_ref="feature")) is None


def test_labels_ignore_any_and_case_insensitive():
    config = RepoConfig(labels_ignore=("no-preview", "wip"))
    held = held_by_pull(config, PullFacts(labels=("bug", "WIP")))
    assert held is not None and held.hold is Hold.SKIPPED and held.reason.startswith("labelled wip (labels.ignore)")
    assert held_by_pull(config, PullFacts(labels=("bug",))) is None


def test_labels_require_one_of_them():
    config = RepoConfig(labels_require=("preview", "deploy-me"))
    held = held_by_pull(config, PullFacts(labels=("bug",)))
    assert held is not None and held.hold is Hold.SKIPPED
    assert held.reason == "needs one of the labels preview, deploy-me (labels.require)"
    assert held_by_pull(config, PullFacts(labels=("Deploy-Me",))) is None
    assert held_by_pull(config, PullFacts(labels=("preview", "bug"))) is None


def test_labels_ignore_wins_over_require():
    config = RepoConfig(labels_require=("preview",), labels_ignore=("no-preview",))
    held = held_by_pull(config, PullFacts(labels=("preview", "no-preview")))
    assert held is not None and "labels.ignore" in held.reason


def test_cheapest_first_manual_before_the_rest():
    config = RepoConfig(deploy="manual", drafts=False, labels_require=("preview",))
    held = held_by_pull(config, PullFacts(draft=True))
    assert held is not None and held.reason == MANUAL_REASON


@pytest.mark.parametrize(
    ("patterns", "path", "selected"),
    [
        (["app/**"], "app/main.py", True),
        (["app/**"], "app/deep/er/x.js", True),
        (["app/**"], "apps/main.py", False),
        (["app/**"], "lib/app/main.py", False),
        (["app"], "app/main.py", True),  # a directory selects what is under it
        (["app"], "lib/app/main.py", True),  # no slash: at any depth
        (["/app"], "lib/app/main.py", False),  # leading slash: anchored
        (["*.md"], "docs/guide/intro.md", True),
        (["*.md"], "docs/guide/intro.mdx", False),
        (["docs/*.md"], "docs/a.md", True),
        (["docs/*.md"], "docs/sub/a.md", False),
        (["**/Dockerfile"], "Dockerfile", True),
        (["**/Dockerfile"], "services/web/Dockerfile", True),
        (["infra/**/*.tf"], "infra/main.tf", True),
        (["infra/**/*.tf"], "infra/modules/net/vpc.tf", True),
        (["app/**", "!app/**/*.md"], "app/README.md", False),
        (["app/**", "!app/**/*.md"], "app/main.py", True),
        (["!app/**", "app/keep.py"], "app/keep.py", True),  # the last matching pattern wins
        (["src/?.c"], "src/a.c", True),
        (["src/?.c"], "src/ab.c", False),
    ],
)
def test_path_globs(patterns, path, selected):
    assert path_selected(patterns, path) is selected


def test_paths():
    config = RepoConfig(paths=("app/**", "infra/**"))
    held = held_by_paths(config, ["README.md", "docs/x.md"])
    assert held is not None and held.hold is Hold.SKIPPED
    assert held.reason == "changes no file under paths (app/**, infra/**)"
    assert held_by_paths(config, ["README.md", "infra/main.tf"]) is None


def test_paths_beyond_githubs_file_limit_deploy():
    assert held_by_paths(RepoConfig(paths=("app/**",)), None) is None


@pytest.mark.parametrize(
    ("status", "conclusion", "state", "outcome"),
    [
        ("completed", "success", CheckState.SUCCEEDED, ""),
        ("completed", "neutral", CheckState.SUCCEEDED, ""),
        ("completed", "skipped", CheckState.SUCCEEDED, ""),
        ("completed", "failure", CheckState.FAILED, "failed"),
        ("completed", "cancelled", CheckState.FAILED, "was cancelled"),
        ("completed", "timed_out", CheckState.FAILED, "timed out"),
        ("completed", "action_required", CheckState.FAILED, "needs an action"),
        ("completed", "startup_failure", CheckState.FAILED, "failed to start"),
        ("completed", "stale", CheckState.FAILED, "went stale"),
        ("queued", None, CheckState.PENDING, ""),
        ("in_progress", None, CheckState.PENDING, ""),
    ],
)
def test_check_run_states(status, conclusion, state, outcome):
    assert check_of_run({"status": status, "conclusion": conclusion}) == Check(state, outcome)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("success", Check(CheckState.SUCCEEDED)),
        ("pending", Check(CheckState.PENDING)),
        ("failure", Check(CheckState.FAILED, "failed")),
        ("error", Check(CheckState.FAILED, "errored")),
    ],
)
def test_commit_status_states(state, expected):
    assert check_of_status(state) == expected


def test_checks_by_name_newest_run_then_status():
    runs = [
        {"id": 1, "name": "build-image", "status": "completed", "conclusion": "failure"},
        {"id": 3, "name": "build-image", "status": "completed", "conclusion": "success"},  # the re-run
        {"id": 2, "name": "lint", "status": "in_progress", "conclusion": None},
    ]
    statuses = [{"context": "ci/deploy", "state": "success"}, {"context": "build-image", "state": "failure"}]
    found = checks_by_name(["build-image", "ci/deploy", "e2e"], runs, statuses)
    assert found == {"build-image": Check(CheckState.SUCCEEDED), "ci/deploy": Check(CheckState.SUCCEEDED)}


def test_wait_for_pending_or_absent_waits():
    held = held_by_checks(["build-image", "e2e"], SHA, {"build-image": Check(CheckState.PENDING)})
    assert held is not None and (held.hold, held.reason) == (Hold.WAITING, "waiting for build-image, e2e")


def test_wait_for_failure_says_so_and_waits_for_a_rerun():
    checks = {"build-image": Check(CheckState.FAILED, "failed"), "e2e": Check(CheckState.PENDING)}
    held = held_by_checks(["e2e", "build-image"], SHA, checks)
    assert held is not None and held.hold is Hold.WAITING
    assert held.reason.startswith("build-image failed on ec26c3e; not deploying")


def test_wait_for_all_succeeded():
    checks = {"build-image": Check(CheckState.SUCCEEDED), "e2e": Check(CheckState.SUCCEEDED)}
    assert held_by_checks(["build-image", "e2e"], SHA, checks) is None


def test_resolve_again_only_when_a_fact_that_matters_changed():
    labelled = PullFacts(labels=("bug",))
    relabelled = PullFacts(labels=("bug", "preview"))
    plain = {"drafts": True, "labels_require": [], "labels_ignore": []}
    assert resolve_again(labelled, labelled, None, held=True) is False, "nothing changed: nothing to do"
    assert resolve_again(labelled, PullFacts(labels=("BUG",)), plain, held=False) is False
    assert resolve_again(labelled, relabelled, plain, held=False) is False, "no rule looks at labels"
    assert resolve_again(labelled, relabelled, {**plain, "labels_require": ["preview"]}, held=False) is True
    assert resolve_again(labelled, relabelled, {**plain, "labels_ignore": ["Preview"]}, held=False) is True
    assert resolve_again(labelled, relabelled, {**plain, "labels_ignore": ["wip"]}, held=False) is False
    assert resolve_again(labelled, relabelled, plain, held=True) is True, "a held preview may be released"
    assert resolve_again(labelled, relabelled, None, held=False) is True, "never resolved yet"
    assert resolve_again(PullFacts(), PullFacts(draft=True), plain, held=False) is False
    assert resolve_again(PullFacts(), PullFacts(draft=True), {**plain, "drafts": False}, held=False) is True
    assert resolve_again(PullFacts(base_ref="main"), PullFacts(base_ref="next"), plain, held=False) is True
