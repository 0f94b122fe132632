"""The whole app in-process (real HTTP server, real PostgreSQL, real Terraform on the scripted test module)."""

from __future__ import annotations

import asyncio

from tests.support import environment, fake_sha, runs, wait_for


async def post(client, deliveries, event: str, data: dict, delivery_id: str | None = None):
    body, headers = deliveries.signed(event, data, delivery_id)
    resp = await client.post("/webhooks", data=body, headers=headers)
    return resp.status, await resp.json()


async def converged(db, env_id: int, status: str):
    env = await environment(db, env_id)
    return env if env and env["status"] == status and env["observed_generation"] == env["generation"] else None


async def test_opened_pr_becomes_active_with_logs_and_outputs(start_app, deliveries, db):
    client = await start_app()
    status, body = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    assert status == 202
    env = await wait_for(lambda: converged(db, body["environment_id"], "active"), what="active")

    sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert env["deployed_sha"] == sha
    assert env["name"] == f"pr-2-hello-world-{env['id']}"
    assert env["preview_url"] == f"http://{env['name']}.preview.test/"
    (run,) = await runs(db, env["id"])
    assert (run["action"], run["state"], run["sha"]) == ("apply", "succeeded", sha)
    lines = [r["line"] for r in await db.fetch("SELECT line FROM run_logs WHERE run_id = $1 ORDER BY seq", run["id"])]
    assert any("step 1 done" in line for line in lines), lines
    assert any(line.startswith("Apply complete!") for line in lines), lines

    resp = await client.get(f"/api/environments/{env['id']}")
    detail = await resp.json()
    assert detail["status"] == "active" and detail["head_sha"] == sha and detail["deployed_sha"] == sha
    assert detail["outputs"] == {"preview_url": env["preview_url"], "sha": sha}
    assert [r["state"] for r in detail["runs"]] == ["succeeded"]


async def test_burst_of_pushes_coalesces_to_at_most_two_applies(start_app, deliveries, db):
    client = await start_app(terraform_env={"TF_VAR_delay": "1"})
    status, body = await post(client, deliveries, "pull_request", deliveries.pull_request("opened", sha=fake_sha(0)))
    env_id = body["environment_id"]
    await wait_for(lambda: _running(db, env_id), what="first apply running")
    for i in range(1, 11):
        status, _ = await post(
            client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fake_sha(i))
        )
        assert status == 202
    env = await wait_for(lambda: converged(db, env_id, "active"), timeout=60, what="active at the last SHA")

    assert env["deployed_sha"] == fake_sha(10)
    applies = [r for r in await runs(db, env_id) if r["action"] == "apply"]
    assert 1 <= len(applies) <= 2, applies
    assert applies[-1]["sha"] == fake_sha(10) and applies[-1]["state"] == "succeeded"
    assert all(r["state"] in ("superseded", "succeeded") for r in applies)


async def _running(db, env_id):
    return await db.fetchval("SELECT count(*) FROM runs WHERE environment_id = $1 AND state = 'running'", env_id)


async def test_close_during_slow_apply_interrupts_then_destroys(start_app, deliveries, db, settings):
    client = await start_app(terraform_env={"TF_VAR_delay": "30"})
    _, body = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    env_id = body["environment_id"]
    await wait_for(lambda: _log_contains(db, env_id, "Provisioning with 'local-exec'"), what="apply in progress")

    started = asyncio.get_running_loop().time()
    status, _ = await post(client, deliveries, "pull_request", deliveries.pull_request("closed"))
    assert status == 202
    env = await wait_for(lambda: converged(db, env_id, "destroyed"), timeout=25, what="destroyed")
    assert asyncio.get_running_loop().time() - started < 20, "the 30 s apply was not interrupted"

    assert [(r["action"], r["state"]) for r in await runs(db, env_id)] == [
        ("apply", "superseded"),
        ("destroy", "succeeded"),
    ]
    assert env["provisioned"] is False and env["preview_url"] is None
    assert await _terraform_processes(settings) == []


async def _log_contains(db, env_id, text):
    return await db.fetchval(
        """SELECT count(*) FROM run_logs l JOIN runs r ON r.id = l.run_id
           WHERE r.environment_id = $1 AND l.line LIKE '%' || $2 || '%'""",
        env_id,
        text,
    )


async def _terraform_processes(settings):
    from tests.support import processes_with

    return processes_with(str(settings.data_dir))


async def test_failed_apply_is_retried_with_backoff_until_it_succeeds(start_app, deliveries, db, tmp_path):
    marker = tmp_path / "fail"
    marker.touch()
    client = await start_app(terraform_env={"TF_VAR_fail_marker": str(marker)})
    _, body = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    env_id = body["environment_id"]

    env = await wait_for(lambda: _attempts(db, env_id, 2), what="two failed attempts")
    assert env["status"] == "failed" and "scripted failure" in env["last_error"]
    marker.unlink()
    env = await wait_for(lambda: converged(db, env_id, "active"), what="active after the failure is fixed")
    states = [r["state"] for r in await runs(db, env_id)]
    assert states[:2] == ["failed", "failed"] and states[-1] == "succeeded"
    assert env["attempts"] == 0 and env["last_error"] is None


async def _attempts(db, env_id, n):
    env = await environment(db, env_id)
    return env if env.get("attempts", 0) >= n else None


async def test_retries_stop_after_the_limit_until_a_new_push(start_app, deliveries, db, tmp_path):
    marker = tmp_path / "fail"
    marker.touch()
    client = await start_app(terraform_env={"TF_VAR_fail_marker": str(marker)}, max_attempts=2)
    _, body = await post(client, deliveries, "pull_request", deliveries.pull_request("opened"))
    env_id = body["environment_id"]
    env = await wait_for(lambda: _attempts(db, env_id, 2), what="two failed attempts")
    assert env["next_attempt_at"] is None, "retries should be parked after max_attempts"

    marker.unlink()
    await post(client, deliveries, "pull_request", deliveries.pull_request("synchronize", sha=fake_sha("fix")))
    env = await wait_for(lambda: converged(db, env_id, "active"), what="active after a new push")
    assert env["deployed_sha"] == fake_sha("fix")
