"""Pure parsers: Terraform's `-json` stream, and environment names."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ghapp.core.commands import KEEP_OFF, Parsed, parse_command
from ghapp.core.contract import environment_name, short_sha
from ghapp.core.tfevents import Progress, parse_line

pytestmark = pytest.mark.fast  # no PostgreSQL, Terraform or server: `pytest -m fast`


def test_short_sha():
    assert (short_sha("ec26c3e57ca3a959ca5aad62de7213c562f8c821"), short_sha(None), short_sha("")) == (
        "ec26c3e",
        "",
        "",
    )


# --- tfevents: real `terraform apply -json` output (Terraform 1.11.4, tests/modules/scripted plus a sensitive
# output `token`), captured once --------------------------------------------------------------------------------------

APPLY = r"""
{"@level":"info","@message":"Terraform 1.11.4","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.170697Z","terraform":"1.11.4","type":"version","ui":"1.2"}
{"@level":"info","@message":"terraform_data.step[0]: Plan to create","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.184671Z","change":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"create"},"type":"planned_change"}
{"@level":"info","@message":"terraform_data.step[1]: Plan to create","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.184786Z","change":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"create"},"type":"planned_change"}
{"@level":"info","@message":"Plan: 2 to add, 0 to change, 0 to destroy.","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.184804Z","changes":{"add":2,"change":0,"import":0,"remove":0,"operation":"plan"},"type":"change_summary"}
{"@level":"info","@message":"Outputs: 3","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.184823Z","outputs":{"preview_url":{"sensitive":false,"action":"create"},"sha":{"sensitive":false,"action":"create"},"token":{"sensitive":true,"action":"create"}},"type":"outputs"}
{"@level":"info","@message":"terraform_data.step[0]: Creating...","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.187674Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"create"},"type":"apply_start"}
{"@level":"info","@message":"terraform_data.step[0]: Provisioning with 'local-exec'...","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.188029Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"provisioner":"local-exec"},"type":"provision_start"}
{"@level":"info","@message":"terraform_data.step[0]: (local-exec): Executing: [\"/bin/sh\" \"-c\" \"sleep 0; if [ -n \\\"$FAIL\\\" ] \u0026\u0026 [ -e \\\"$FAIL\\\" ]; then echo scripted failure \u003e\u00262; exit 3; fi; echo step 0 done\"]","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.188120Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"provisioner":"local-exec","output":"Executing: [\"/bin/sh\" \"-c\" \"sleep 0; if [ -n \\\"$FAIL\\\" ] \u0026\u0026 [ -e \\\"$FAIL\\\" ]; then echo scripted failure \u003e\u00262; exit 3; fi; echo step 0 done\"]"},"type":"provision_progress"}
{"@level":"info","@message":"terraform_data.step[1]: Creating...","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.188393Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"create"},"type":"apply_start"}
{"@level":"info","@message":"terraform_data.step[1]: Provisioning with 'local-exec'...","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.188763Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"provisioner":"local-exec"},"type":"provision_start"}
{"@level":"info","@message":"terraform_data.step[1]: (local-exec): Executing: [\"/bin/sh\" \"-c\" \"sleep 0; if [ -n \\\"$FAIL\\\" ] \u0026\u0026 [ -e \\\"$FAIL\\\" ]; then echo scripted failure \u003e\u00262; exit 3; fi; echo step 1 done\"]","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.188816Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"provisioner":"local-exec","output":"Executing: [\"/bin/sh\" \"-c\" \"sleep 0; if [ -n \\\"$FAIL\\\" ] \u0026\u0026 [ -e \\\"$FAIL\\\" ]; then echo scripted failure \u003e\u00262; exit 3; fi; echo step 1 done\"]"},"type":"provision_progress"}
{"@level":"info","@message":"terraform_data.step[0]: (local-exec): step 0 done","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.191553Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"provisioner":"local-exec","output":"step 0 done"},"type":"provision_progress"}
{"@level":"info","@message":"terraform_data.step[0]: (local-exec) Provisioning complete","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.191663Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"provisioner":"local-exec"},"type":"provision_complete"}
{"@level":"info","@message":"terraform_data.step[0]: Creation complete after 0s [id=f828fe6e-6102-128c-ee41-0c2d8e0d4f6f]","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.191783Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"create","id_key":"id","id_value":"f828fe6e-6102-128c-ee41-0c2d8e0d4f6f","elapsed_seconds":0},"type":"apply_complete"}
{"@level":"info","@message":"terraform_data.step[1]: (local-exec): step 1 done","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.193141Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"provisioner":"local-exec","output":"step 1 done"},"type":"provision_progress"}
{"@level":"info","@message":"terraform_data.step[1]: (local-exec) Provisioning complete","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.193463Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"provisioner":"local-exec"},"type":"provision_complete"}
{"@level":"info","@message":"terraform_data.step[1]: Creation complete after 0s [id=645b175f-c6bd-ee87-e240-e4c6218a01d6]","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.193539Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"create","id_key":"id","id_value":"645b175f-c6bd-ee87-e240-e4c6218a01d6","elapsed_seconds":0},"type":"apply_complete"}
{"@level":"info","@message":"Apply complete! Resources: 2 added, 0 changed, 0 destroyed.","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.195450Z","changes":{"add":2,"change":0,"import":0,"remove":0,"operation":"apply"},"type":"change_summary"}
{"@level":"info","@message":"Outputs: 3","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.195476Z","outputs":{"preview_url":{"sensitive":false,"type":"string","value":"http://pr-2-r-1.preview.test/"},"sha":{"sensitive":false,"type":"string","value":"abc"},"token":{"sensitive":true,"type":"string"}},"type":"outputs"}
""".splitlines()[1:]

# `apply` at a new SHA (replaces both resources) with the scripted failure; refresh_*, provision_start/complete/errored
# and the "Executing" lines left out.
FAILED_APPLY = r"""
{"@level":"info","@message":"Terraform 1.11.4","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.239456Z","terraform":"1.11.4","type":"version","ui":"1.2"}
{"@level":"info","@message":"terraform_data.step[1]: Plan to replace","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.248383Z","change":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"replace","reason":"cannot_update"},"type":"planned_change"}
{"@level":"info","@message":"terraform_data.step[0]: Plan to replace","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.248492Z","change":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"replace","reason":"cannot_update"},"type":"planned_change"}
{"@level":"info","@message":"Plan: 2 to add, 0 to change, 2 to destroy.","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.248505Z","changes":{"add":2,"change":0,"import":0,"remove":2,"operation":"plan"},"type":"change_summary"}
{"@level":"info","@message":"Outputs: 3","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.248520Z","outputs":{"preview_url":{"sensitive":false,"action":"noop"},"sha":{"sensitive":false,"action":"update"},"token":{"sensitive":true,"action":"noop"}},"type":"outputs"}
{"@level":"info","@message":"terraform_data.step[1]: Destroying... [id=645b175f-c6bd-ee87-e240-e4c6218a01d6]","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.250858Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"delete","id_key":"id","id_value":"645b175f-c6bd-ee87-e240-e4c6218a01d6"},"type":"apply_start"}
{"@level":"info","@message":"terraform_data.step[1]: Destruction complete after 0s","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.250943Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"delete","elapsed_seconds":0},"type":"apply_complete"}
{"@level":"info","@message":"terraform_data.step[0]: Destroying... [id=f828fe6e-6102-128c-ee41-0c2d8e0d4f6f]","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.252161Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"delete","id_key":"id","id_value":"f828fe6e-6102-128c-ee41-0c2d8e0d4f6f"},"type":"apply_start"}
{"@level":"info","@message":"terraform_data.step[0]: Destruction complete after 0s","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.252520Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"delete","elapsed_seconds":0},"type":"apply_complete"}
{"@level":"info","@message":"terraform_data.step[1]: Creating...","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.252599Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"create"},"type":"apply_start"}
{"@level":"info","@message":"terraform_data.step[0]: Creating...","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.253133Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"create"},"type":"apply_start"}
{"@level":"info","@message":"terraform_data.step[1]: (local-exec): scripted failure","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.258848Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"provisioner":"local-exec","output":"scripted failure"},"type":"provision_progress"}
{"@level":"info","@message":"terraform_data.step[1]: Creation errored after 0s","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.259129Z","hook":{"resource":{"addr":"terraform_data.step[1]","module":"","resource":"terraform_data.step[1]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":1},"action":"create","elapsed_seconds":0},"type":"apply_errored"}
{"@level":"info","@message":"terraform_data.step[0]: (local-exec): scripted failure","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.262703Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"provisioner":"local-exec","output":"scripted failure"},"type":"provision_progress"}
{"@level":"info","@message":"terraform_data.step[0]: Creation errored after 0s","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.262970Z","hook":{"resource":{"addr":"terraform_data.step[0]","module":"","resource":"terraform_data.step[0]","implied_provider":"terraform","resource_type":"terraform_data","resource_name":"step","resource_key":0},"action":"create","elapsed_seconds":0},"type":"apply_errored"}
{"@level":"error","@message":"Error: local-exec provisioner error","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.265229Z","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"Error running command 'sleep 0; if [ -n \"$FAIL\" ] \u0026\u0026 [ -e \"$FAIL\" ]; then echo scripted failure \u003e\u00262; exit 3; fi; echo step 0 done': exit status 3. Output: scripted failure\n","address":"terraform_data.step[0]","range":{"filename":"main.tf","start":{"line":23,"column":28,"byte":675},"end":{"line":23,"column":29,"byte":676}},"snippet":{"context":"resource \"terraform_data\" \"step\"","code":"  provisioner \"local-exec\" {","start_line":23,"highlight_start_offset":27,"highlight_end_offset":28,"values":[]}},"type":"diagnostic"}
{"@level":"error","@message":"Error: local-exec provisioner error","@module":"terraform.ui","@timestamp":"2026-11-26T07:09:28.265643Z","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"Error running command 'sleep 0; if [ -n \"$FAIL\" ] \u0026\u0026 [ -e \"$FAIL\" ]; then echo scripted failure \u003e\u00262; exit 3; fi; echo step 1 done': exit status 3. Output: scripted failure\n","address":"terraform_data.step[1]","range":{"filename":"main.tf","start":{"line":23,"column":28,"byte":675},"end":{"line":23,"column":29,"byte":676}},"snippet":{"context":"resource \"terraform_data\" \"step\"","code":"  provisioner \"local-exec\" {","start_line":23,"highlight_start_offset":27,"highlight_end_offset":28,"values":[]}},"type":"diagnostic"}
""".splitlines()[1:]

ADDR0, ADDR1 = "terraform_data.step[0]", "terraform_data.step[1]"


def events(lines: list[str]) -> list[dict]:
    return [parse_line(line)[1] for line in lines]


def test_every_real_line_parses_with_its_message():
    for line in APPLY + FAILED_APPLY:
        message, event = parse_line(line + "\n")
        assert event == json.loads(line)
        if event["type"] != "diagnostic":
            assert message == event["@message"]


def test_parse_line_types():
    kinds = [e["type"] for e in events(APPLY)]
    assert kinds[:5] == ["version", "planned_change", "planned_change", "change_summary", "outputs"]
    assert {"apply_start", "provision_start", "provision_progress", "provision_complete", "apply_complete"} <= set(
        kinds
    )
    assert kinds[-2:] == ["change_summary", "outputs"]


def test_parse_line_diagnostic_reads_like_terraforms_own_output():
    diagnostic = next(line for line in FAILED_APPLY if '"type":"diagnostic"' in line)
    message, event = parse_line(diagnostic)
    assert event["diagnostic"]["severity"] == "error"
    first, _, rest = message.partition("\n")
    assert first == "Error: local-exec provisioner error"
    assert rest.startswith("Error running command 'sleep 0;") and "Output: scripted failure" in rest


def test_parse_line_warning_without_detail():
    line = json.dumps(
        {
            "@level": "warn",
            "@message": "Warning: Deprecated attribute",
            "@module": "terraform.ui",
            "@timestamp": "2026-11-26T07:09:28.265229Z",
            "type": "diagnostic",
            "diagnostic": {"severity": "warning", "summary": "Deprecated attribute", "detail": ""},
        }
    )
    assert parse_line(line)[0] == "Warning: Deprecated attribute"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "There are some problems with the CLI configuration:",
        "│ Warning: Unable to open CLI configuration file",
        "{ not json",
        '{"unterminated": ',
        "[1, 2, 3]",
        '  {"type": "version"}',
        "Apply complete! Resources: 2 added, 0 changed, 0 destroyed.",
    ],
)
def test_parse_line_passes_plain_text_through(line):
    assert parse_line(line + "\r\n") == (line, None)


def test_parse_line_odd_json():
    assert parse_line("{}") == ("", {})
    assert parse_line('{"type": "diagnostic"}') == (": ", {"type": "diagnostic"})
    assert parse_line('{"@message": 42}') == ("42", {"@message": 42})


def test_progress_of_a_successful_apply():
    progress = Progress()
    seen = []
    for event in events(APPLY):
        changed = progress.feed(event)
        seen.append((event["type"], changed, progress.done, progress.current))
        assert progress.as_dict() == {"total": progress.total, "done": progress.done, "current": progress.current}

    assert progress.as_dict() == {"total": 2, "done": 2, "current": None}
    assert progress.outputs == {"preview_url": "http://pr-2-r-1.preview.test/", "sha": "abc"}
    assert "token" not in progress.outputs  # sensitive
    assert progress.errors == []
    moves = [(kind, done, current) for kind, changed, done, current in seen if changed]
    assert moves == [
        ("change_summary", 0, None),
        ("apply_start", 0, ADDR0),
        ("apply_start", 0, ADDR1),
        ("apply_complete", 1, ADDR1),
        ("apply_complete", 2, None),
    ]
    unchanged = {kind for kind, changed, *_ in seen if not changed}
    assert unchanged == {
        "version",
        "planned_change",
        "outputs",
        "provision_start",
        "provision_progress",
        "provision_complete",
        "change_summary",
    }  # the second change_summary is the apply's


def test_progress_of_a_failed_apply():
    progress = Progress()
    for event in events(FAILED_APPLY):
        progress.feed(event)
    assert progress.total == 4  # replace = 2 to add + 2 to destroy
    assert progress.done == 2  # the two destroys; both creates errored
    assert progress.current is None
    assert progress.outputs == {}, "planned outputs carry no values"
    assert len(progress.errors) == 2
    for error in progress.errors:
        assert error.startswith("local-exec provisioner error Error running command")
        assert error.endswith("exit status 3. Output: scripted failure")


def test_progress_ignores_warnings_and_keeps_error_summaries_without_detail():
    progress = Progress()
    progress.feed({"type": "diagnostic", "diagnostic": {"severity": "warning", "summary": "Deprecated"}})
    progress.feed(
        {"type": "diagnostic", "diagnostic": {"severity": "error", "summary": "Invalid value", "detail": None}}
    )
    assert progress.errors == ["Invalid value"]


def test_progress_never_keeps_sensitive_values():
    progress = Progress()
    progress.feed(
        {
            "type": "outputs",
            "outputs": {
                "url": {"sensitive": False, "type": "string", "value": "http://x/"},
                "password": {"sensitive": True, "type": "string", "value": "hunter2"},
                "structured": {"sensitive": False, "type": ["object", {"a": "number"}], "value": {"a": 1}},
            },
        }
    )
    assert progress.outputs == {"url": "http://x/", "structured": {"a": 1}}


def test_progress_of_a_destroy_counts_removals():
    progress = Progress()
    progress.feed(
        {"type": "change_summary", "changes": {"add": 0, "change": 0, "import": 0, "remove": 3, "operation": "plan"}}
    )
    progress.feed(
        {"type": "change_summary", "changes": {"add": 0, "change": 0, "import": 0, "remove": 3, "operation": "destroy"}}
    )
    assert progress.total == 3


def test_progress_ignores_events_without_a_resource():
    progress = Progress()
    assert progress.feed({"type": "apply_start"}) is False
    assert progress.feed({"type": "apply_start", "hook": {}}) is False
    assert progress.feed({"type": "apply_complete", "hook": {"resource": {"addr": "x.y"}}}) is True
    assert progress.as_dict() == {"total": None, "done": 1, "current": None}


# --- environment names -----------------------------------------------------------------------------------------------

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@pytest.mark.parametrize(
    ("env_id", "repository", "pr", "name"),
    [
        (1, "Codertocat/Hello-World", 2, "pr-2-hello-world-1"),
        (17, "octo/my_repo.js", 5, "pr-5-my-repo-js-17"),
        (3, "octo/---", 9, "pr-9-3"),
        (4, "octo/日本語", 1, "pr-1-4"),
        (5, "octo/Ünïcödé", 1, "pr-1-n-c-d-5"),
        (6, "HelloWorld", 1, "pr-1-helloworld-6"),
        (7, "a/b/c", 1, "pr-1-c-7"),
        (8, "", 1, "pr-1-8"),
    ],
)
def test_environment_name_examples(env_id, repository, pr, name):
    assert environment_name(env_id, repository, pr) == name


@pytest.mark.parametrize(
    "repository",
    [
        "octo/$(rm -rf /)",
        "octo/`id`; echo pwned",
        "octo/../../etc/passwd",
        "octo/a\nb\tc\x00d",
        "octo/" + "x" * 300,
        "octo/" + "-" * 300,
        "octo/" + "a-" * 100,
        "octo/" + "é" * 100,
        "octo/🚀🚀🚀",
        "octo/UPPER.case_Mixed",
        "octo/\u202eevil",
    ],
)
@pytest.mark.parametrize("env_id", [1, 99, 10**6, 10**15])
def test_environment_name_is_dns_safe_for_hostile_names(repository, env_id):
    name = environment_name(env_id, repository, 123456)
    assert DNS_LABEL.fullmatch(name), name
    assert len(name) <= 63 and name.startswith("pr-123456") and name.endswith(f"-{env_id}")


@given(st.integers(1, 10**18), st.text(), st.integers(1, 10**9))
def test_environment_name_is_always_a_dns_label(env_id, repository, pr):
    name = environment_name(env_id, repository, pr)
    assert DNS_LABEL.fullmatch(name), name
    assert len(name) <= 63 and name.endswith(f"-{env_id}")


@given(st.integers(1, 10**12), st.integers(1, 10**12), st.text(), st.text(), st.integers(1, 10**6))
def test_environment_names_differ_for_different_ids(id_a, id_b, repo_a, repo_b, pr):
    if id_a != id_b:
        assert environment_name(id_a, repo_a, pr) != environment_name(id_b, repo_b, pr)


def test_environment_name_is_stable():
    assert environment_name(42, "Codertocat/Hello-World", 2) == environment_name(42, "Codertocat/Hello-World", 2)


def test_next_slice_continues_after_the_last_key_and_wraps_around():
    from ghapp.core.policy import next_slice

    keys = [3, 5, 8, 13]
    assert next_slice(keys, None, 2) == ([3, 5], 5)
    assert next_slice(keys, 5, 2) == ([8, 13], 13)
    assert next_slice(keys, 13, 2) == ([3, 5], 5)
    assert next_slice(keys, 6, 3) == ([8, 13, 3], 3), "a key gone since: continue after where it was"
    assert next_slice(keys, None, 10) == (keys, 13)
    assert next_slice([], 5, 2) == ([], None)


def test_optional_work_waits_while_the_budget_is_at_or_below_the_reserve():
    from ghapp.core.policy import may_spend_optional

    assert may_spend_optional(None, 1000), "unknown: go (the first answer tells)"
    assert may_spend_optional(1001, 1000)
    assert not may_spend_optional(1000, 1000)
    assert may_spend_optional(0, 0) is False and may_spend_optional(1, 0)


# --- /preview deploy [sha] ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ("/preview deploy", Parsed("deploy")),
        ("/preview deploy abc1234", Parsed("deploy", sha="abc1234")),
        ("/preview deploy ABC1234DEF", Parsed("deploy", sha="abc1234def")),
        ("/PREVIEW Deploy\t" + "0" * 40, Parsed("deploy", sha="0" * 40)),
        ("/preview deploy abc1234 once CI passes", Parsed("deploy", sha="abc1234")),
        ("/preview deploy\nabc1234", Parsed("deploy")),  # the argument is on the command's line
        ("/preview deploy abc123", Parsed("deploy", unknown="abc123")),  # too short to name a commit
        ("/preview deploy " + "a" * 41, Parsed("deploy", unknown="a" * 32)),
        ("/preview deploy main", Parsed("deploy", unknown="main")),
        ("/preview deploy $(id)", Parsed("deploy", unknown="id")),
        ("/preview deploy \u0661\u0662\u0663\u0664\u0665\u0666\u0667", Parsed("deploy", unknown="?")),  # Arabic digits
        ("/preview deploy ａｂｃ１２３４", Parsed("deploy", unknown="?")),  # full-width: not ASCII hex
        ("/preview redeploy abc1234", Parsed("redeploy")),  # only deploy takes a commit
        ("/preview destroy abc1234", Parsed("destroy")),
        ("/preview deploy; abc1234", Parsed("help", unknown="deploy")),
    ],
)
def test_deploy_takes_an_optional_sha(body, parsed):
    assert parse_command(body) == parsed


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ("/preview keep", Parsed("keep")),
        ("/PREVIEW Keep", Parsed("keep")),
        ("/preview keep please, we demo it on Friday", Parsed("keep")),  # other arguments are ignored
        ("/preview keep off", Parsed(KEEP_OFF)),
        ("/preview keep OFF\nthanks", Parsed(KEEP_OFF)),
        ("/preview keep\noff", Parsed("keep")),  # the argument is on the command's line
        ("/preview keep-off", Parsed("help", unknown="keep-off")),
        ("/preview keep offline", Parsed("keep")),
    ],
)
def test_keep_and_keep_off(body, parsed):
    assert parse_command(body) == parsed


@given(st.text(st.sampled_from("0123456789abcdefABCDEFgxz;$ \t"), max_size=45))
def test_a_deploy_argument_is_a_sha_or_reported(argument):
    parsed = parse_command(f"/preview deploy {argument}")
    assert parsed is not None and parsed.command in ("deploy", "help")
    if parsed.sha is not None:
        assert re.fullmatch(r"[0-9a-f]{7,40}", parsed.sha) and parsed.unknown is None
        assert argument.split()[0].lower() == parsed.sha
    elif parsed.command == "deploy" and argument.split(maxsplit=1) and parsed.unknown is None:
        raise AssertionError(f"argument {argument!r} neither a SHA nor reported")
