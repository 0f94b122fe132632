"""A replica stopped between GitHub creating a report and ghapp recording it (issue 14): `ghapp serve` as real
processes on one database, the fake GitHub holding the answer to the create until the replica is gone. Whatever
the signal, the commit ends with one check run, completed, and one deployment, successful."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import SCRIPTED_MODULE
from tests.support import ServeProcess, deliver, environment, ready, wait_for
from tests.test_github_app import INSTALLATION, REPO, REPO_ID, SHA, github  # noqa: F401 - the fixture


@pytest.fixture
def replica(serve, github):
    """Start a `ghapp serve` replica as the GitHub App talking to the fake, on the scripted module."""

    def start(**extra) -> ServeProcess:
        return serve(
            GITHUB_APP_ID=str(github.app_id),
            GITHUB_PRIVATE_KEY=github.private_key_pem,
            GITHUB_API_URL=github.base_url,
            GHAPP_TERRAFORM_MODULE=str(SCRIPTED_MODULE),
            GHAPP_SHUTDOWN_GRACE="20s",
            **extra,
        )

    return start


async def settled(db, env_id: int):
    """The environment active, and everything about it published."""
    env = await environment(db, env_id)
    done = env and env["status"] == "active" and env["observed_generation"] == env["generation"]
    return env if done and env["published_version"] == env["version"] else None


async def stop(proc: ServeProcess, sig: int, hold) -> None:
    """Stop `proc` with `sig` while GitHub holds its answer. SIGKILL: gone before the answer. SIGTERM: once the
    replica is shutting down, the answer goes; the replica finishes its publish and exits."""
    proc.proc.send_signal(sig)
    if sig == signal.SIGTERM:
        await wait_for(lambda: _shutting_down(proc), what="the replica shutting down")
    else:
        await wait_for(lambda: _exited(proc), what="the replica killed")
    hold.release()
    code = await wait_for(lambda: _exited(proc), timeout=30, what="the replica gone")
    assert sig == signal.SIGKILL or code == (0,), proc.log()[-3000:]


async def _shutting_down(proc: ServeProcess):
    return "shutting down" in proc.log() or proc.proc.poll() is not None


async def _exited(proc: ServeProcess):
    code = proc.proc.poll()
    return None if code is None else (code,)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_check_run_created_once_when_the_replica_is_stopped_before_recording_it(
    replica, github, deliveries, db, sig
):
    hold = github.hold("checks/create")
    first = replica()
    await wait_for(lambda: ready(first), what="serve ready")
    env_id = (await deliver(first, deliveries, deliveries.pull_request("opened")))["environment_id"]
    await hold.reached()
    assert len(github.check_runs(REPO)) == 1, "GitHub has the check run"
    await stop(first, sig, hold)
    if sig == signal.SIGTERM:  # drained: the answer was recorded before the replica exited
        published = (await environment(db, env_id))["published"]
        assert '"id": null' not in published and str(github.check_runs(REPO)[0]["id"]) in published

    second = replica()
    await wait_for(lambda: settled(db, env_id), timeout=90, what="active and published after the restart")
    runs = [r for r in github.check_runs(REPO) if r["head_sha"] == SHA]
    assert [(r["name"], r["status"], r["conclusion"]) for r in runs] == [
        ("Preview environment", "completed", "success")
    ], runs
    assert len(github.deployments(REPO)) == 1
    second.kill(signal.SIGTERM)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_deployment_created_once_when_the_replica_is_stopped_before_recording_it(
    replica, github, deliveries, db, sig
):
    hold = github.hold("repos/create-deployment")
    first = replica()
    await wait_for(lambda: ready(first), what="serve ready")
    env_id = (await deliver(first, deliveries, deliveries.pull_request("opened")))["environment_id"]
    await hold.reached()
    assert len(github.deployments(REPO)) == 1, "GitHub has the deployment"
    await stop(first, sig, hold)

    second = replica()
    await wait_for(lambda: settled(db, env_id), timeout=90, what="active and published after the restart")
    (deployment,) = github.deployments(REPO)
    assert (deployment["sha"], deployment["environment"]) == (SHA, "pr-2")
    assert github.deployment_statuses(REPO, deployment["id"])[-1]["state"] == "success"
    runs = [r for r in github.check_runs(REPO) if r["head_sha"] == SHA]
    assert [(r["status"], r["conclusion"]) for r in runs] == [("completed", "success")], runs
    second.kill(signal.SIGTERM)
