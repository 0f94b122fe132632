"""`.github/preview.yml`: parsing, validation with the line of each problem, hostile files, merging the
organisation's defaults, and encoding `inputs` for Terraform."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghapp.core.contract import Access
from ghapp.core.repoconfig import (
    MAX_BYTES,
    MAX_NODES,
    OPERATOR_INPUTS,
    ConfigProblem,
    ModuleRules,
    RepoConfig,
    check_module,
    encode_inputs,
    merge,
    parse,
    repository_matches,
    to_config,
)
from ghapp.schemas import preview_v1

pytestmark = pytest.mark.fast
ROOT = Path(__file__).parent.parent

FULL = b"""\
version: 1
module: kubernetes
deploy: manual
drafts: false
branches: {ignore: ["dependabot/**"]}
labels: {require: [preview], ignore: [no-preview]}
paths: ["app/**", "infra/**"]
wait_for: [build-image]
source: true
ttl: 48h
sleep_after: 1h30m
access: repository
max_previews: 10
inputs: {image_repository: ghcr.io/acme/web, replicas: 1, debug: true, hosts: [a, b], limits: {cpu: "500m"}}
"""


def problem(text: str | bytes) -> ConfigProblem:
    with pytest.raises(ConfigProblem) as caught:
        parse(text.encode() if isinstance(text, str) else text, preview_v1())
    return caught.value


def test_the_published_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(preview_v1())


def test_every_key_of_version_1():
    parsed = parse(FULL, preview_v1())
    assert to_config(parsed.document) == RepoConfig(
        module="kubernetes",
        deploy="manual",
        drafts=False,
        branches_ignore=("dependabot/**",),
        labels_require=("preview",),
        labels_ignore=("no-preview",),
        paths=("app/**", "infra/**"),
        wait_for=("build-image",),
        source=True,
        ttl=48 * 3600.0,
        sleep_after=5400.0,
        access=Access.REPOSITORY,
        max_previews=10,
        inputs={
            "image_repository": "ghcr.io/acme/web",
            "replicas": 1,
            "debug": True,
            "hosts": ["a", "b"],
            "limits": {"cpu": "500m"},
        },
    )
    assert parsed.lines["ttl"] == 10 and parsed.lines["inputs.replicas"] == 14


def test_an_empty_file_keeps_ghapps_behaviour():
    assert to_config(parse(b"", preview_v1()).document) == RepoConfig()
    assert to_config(parse(b"# nothing yet\nversion: 1\n", preview_v1()).document) == RepoConfig()


def test_a_repository_module_path():
    config = to_config(parse(b"module: {path: infra/preview}\n", preview_v1()).document)
    assert config.module is None and config.module_path == "infra/preview"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("version: 1\n\ndeplyo: manual\n", 3, "unknown key 'deplyo' (did you mean 'deploy'?)"),
        ("labels:\n  requier: [a]\n", 2, "unknown key 'requier' in labels (did you mean 'require'?)"),
        ("colour: blue\n", 1, "unknown key 'colour' (known: access, branches, deploy"),
        ("drafts: 'no'\n", 1, "drafts must be true or false, not 'no' (a string)"),
        ("source: 1\n", 1, "source must be true or false, not 1 (a number)"),
        ("labels:\n  require: foo\n", 2, "labels.require must be a list, not 'foo' (a string)"),
        ("paths: [ok, 3]\n", 1, "paths[1] must be a string, not 3 (a number)"),
        ("max_previews: many\n", 1, "max_previews must be a whole number"),
        ("max_previews: 0\n", 1, "max_previews: 0 is less than the minimum of 1"),
        ("deploy: sometimes\n", 1, "deploy: 'sometimes' is not one of auto, manual"),
        ("access: everyone\n", 1, "access: 'everyone' is not one of public, repository"),
        ("version: 2\n", 1, "version: 2 is not supported (this ghapp reads version 1)"),
        ("\nttl: 48 hours\n", 2, "ttl: '48 hours' is not a duration (write e.g. 30m, 48h, 1h30m)"),
        ("sleep_after: 30\n", 1, "sleep_after: 30 is not a duration"),
        ("ttl: 1w\n", 1, "ttl: '1w' is not a duration"),
        ("module: [a]\n", 1, "module: a catalog name (like `kubernetes`) or `{path: dir}`"),
        ("module: ../etc\n", 1, "module: a catalog name"),
        ("inputs:\n  ok: 1\n  'bad name': x\n", 3, "input name 'bad name' is not a name"),
        (
            "inputs:\n  a: null\n",
            2,
            "inputs.a must be a string, a number, true or false, a list or a mapping, not empty",
        ),
        ("inputs:\n  list: [1, null]\n", 2, "inputs.list[1] must be"),
        ("inputs:\n  x: 1\n  db_password: x\n", 3, "input 'db_password' looks like a secret"),
        ("inputs:\n  GITHUB_TOKEN: x\n", 2, "secrets go in the operator's environment"),
        ("inputs:\n  aws_access_key_id: x\n", 2, "looks like a secret"),
        ("inputs:\n  git_sha: x\n", 2, "input 'git_sha' is set by ghapp itself (the module contract)"),
        ("inputs:\n  source_dir: /etc\n", 2, "is set by ghapp itself"),
        ("inputs:\n  1: x\n", 2, "input name '1' is not a name"),
        ("1: x\n", 1, "key '1' is not a name (quote it if it is one)"),
        ("yes: true\n", 1, "key 'yes' is not a name"),
        ("- module\n", 1, "the file must be a mapping of keys"),
        ("module: kubernetes\n  deploy: manual\n", 2, "not valid YAML"),
        ("paths: [a\n", 2, "not valid YAML"),
        ("version: 1\n---\ndeploy: manual\n", 2, "expected a single document"),
        (
            "a: !!python/object/apply:os.system [echo]\n",
            1,
            "tags (tag:yaml.org,2002:python/object/apply:os.system) are not allowed",
        ),
        ("x: !!binary aGk=\n", 1, "tags (tag:yaml.org,2002:binary) are not allowed"),
        ("ttl: !!timestamp\n", 1, "tags (tag:yaml.org,2002:timestamp) are not allowed"),
        ("version: 1\ninputs: !!map {a: 1}\n", 2, "tags (tag:yaml.org,2002:map) are not allowed"),
        ("drafts: 2024-01-01\n", 1, "drafts must be true or false, not date"),
        ("version: 1\ndeploy: \x07\n", 2, "not valid YAML: the character U+0007 is not allowed"),
        ("inputs:\n  ok: 1\n  ratio: .nan\n", 3, "input 'ratio': .nan and .inf are not numbers Terraform reads"),
        ("inputs:\n  limits: {cpu: [1, -.inf]}\n", 2, "input 'limits': .nan and .inf"),
    ],
)
def test_every_problem_names_its_line_and_reason(text, line, reason):
    found = problem(text)
    assert found.line == line, found
    assert reason in found.reason, found
    assert str(found).startswith(f"line {line}: ")


def test_the_first_problem_by_line_is_reported():
    assert str(problem("ttl: soon\ndrafts: maybe\ndeplyo: x\n")).startswith("line 1: ttl")


def test_anchors_and_aliases_are_refused_before_anything_is_built():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    found = problem(bomb)
    assert found.line == 1 and "anchors and aliases" in found.reason
    assert problem("inputs:\n  x: 1\n  y: *x\n").line == 3


def test_deep_nesting_size_and_encoding_are_limited():
    assert "nested deeper than" in problem("inputs:\n  x: " + "[" * 100 + "]" * 100 + "\n").reason
    many = problem("inputs:\n" + "".join(f"  k{i}: v\n" for i in range(600)))
    assert many.line == 500 and f"more than {MAX_NODES} keys and values" in many.reason
    big = problem(b"# " + b"x" * MAX_BYTES + b"\n")
    assert big.line is None and f"at most {MAX_BYTES} bytes" in big.reason
    latin1 = problem("version: 1\ninputs: {name: caf\u00e9}\n".encode("latin-1"))
    assert latin1.line == 2 and "not UTF-8" in latin1.reason


def test_merge_lays_the_repository_over_the_organisation_key_by_key():
    organization = {"module": "kubernetes", "ttl": "24h", "inputs": {"registry": "ghcr.io/acme", "replicas": 1}}
    repository = {"ttl": "48h", "inputs": {"replicas": 2}, "drafts": False}
    assert merge(organization, repository) == {
        "module": "kubernetes",
        "ttl": "48h",
        "drafts": False,
        "inputs": {"registry": "ghcr.io/acme", "replicas": 2},
    }
    assert merge(None, repository) == repository and merge(organization, None) == organization
    assert organization["inputs"] == {"registry": "ghcr.io/acme", "replicas": 1}  # not changed in place


def test_inputs_are_encoded_as_terraform_reads_them():
    encoded = encode_inputs(
        {
            "s": "ghcr.io/acme/web",
            "t": "true",
            "b": True,
            "f": False,
            "n": 3,
            "x": 1.5,
            "l": [1, "a"],
            "m": {"k": [True]},
        }
    )
    assert encoded == {
        "s": "ghcr.io/acme/web",
        "t": "true",
        "b": "true",
        "f": "false",
        "n": "3",
        "x": "1.5",
        "l": '[1,"a"]',
        "m": '{"k":[true]}',
    }
    assert json.loads(encoded["m"]) == {"k": [True]}


def test_modules_are_checked_against_what_the_operator_allows():
    rules = ModuleRules(catalog=frozenset({"kubernetes", "local"}), repository_module=None)
    check_module(parse(b"module: kubernetes\n", preview_v1()), rules)
    check_module(parse(b"module: {path: infra/preview}\n", preview_v1()), rules)
    with pytest.raises(
        ConfigProblem,
        match=r"line 2: module 'kubernets' is not in the operator's catalog \(did you mean 'kubernetes'\?\)",
    ):
        check_module(parse(b"version: 1\nmodule: kubernets\n", preview_v1()), rules)
    with pytest.raises(ConfigProblem, match="the catalog has: kubernetes, local"):
        check_module(parse(b"module: nomad\n", preview_v1()), rules)
    with pytest.raises(ConfigProblem, match=r"line 1: .*not allowed: a fork"):
        check_module(parse(b"module: {path: infra}\n", preview_v1()), ModuleRules(repository_module="a fork"))
    with pytest.raises(ConfigProblem, match="GHAPP_REPO_MODULES"):
        check_module(parse(b"module: {path: infra}\n", preview_v1()), ModuleRules())
    for path in ("../outside", "/etc", "infra/../../x"):
        with pytest.raises(ConfigProblem, match="relative path inside the repository"):
            check_module(parse(f"module: {{path: '{path}'}}\n".encode(), preview_v1()), rules)


def test_the_operators_platform_inputs_are_refused_and_are_variables_of_ghapps_modules():
    for name in ("pod_security_enforce", "network_policy_enabled", "ingress_annotations", "routing", "state_dir"):
        with pytest.raises(ConfigProblem, match=rf"line 3: input '{name}' is a platform setting"):
            parse(f"version: 1\ninputs:\n  {name}: x\n".encode(), preview_v1())
    parse(b"inputs: {replicas: 2, command: python3 serve.py, image_repository: ghcr.io/a/b}\n", preview_v1())
    declared = {
        m.group(1)
        for module in ("kubernetes", "local")
        for m in re.finditer(r'^variable "(\w+)"', (ROOT / "terraform" / module / "variables.tf").read_text(), re.M)
    }
    assert OPERATOR_INPUTS <= declared


def test_values_that_cannot_be_stored_or_passed_are_refused_at_their_line():
    cases = {
        b'version: 1\ninputs: {m: {"a\\0": 1}}\n': "line 2: input 'm' holds a NUL character",
        b"inputs: {n: [0x" + b"f" * 4000 + b"]}\n": "line 1: input 'n' is a number too large",
        b"ttl: " + b"9" * 5000 + b"d\n": "line 1: ttl is longer than 366 days",
        b'wait_for: ["ci\\0"]\n': "line 1: wait_for holds a NUL character",
    }
    for text, reason in cases.items():
        with pytest.raises(ConfigProblem) as raised:
            parse(text, preview_v1())
        assert str(raised.value).startswith(reason)
    assert to_config(parse(b"ttl: 366d\ninputs: {n: 9223372036854775807}\n", preview_v1()).document).ttl == 366 * 86400


def test_repository_patterns():
    assert repository_matches("Acme/Web", ["acme/web"])
    assert repository_matches("acme/web", ["other/x", "acme/*"])
    assert not repository_matches("acme/web", ["acme/we", "acme/web/*", "*/web"])


_YAMLISH = st.lists(
    st.sampled_from([*"ab:-[]{}&*!|>'\"#\n .,0123456789\t\x07\\", "inputs", "ttl", "module", "version"])
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _YAMLISH.map(str.encode)))
def test_any_bytes_end_in_a_configuration_or_a_problem(data):
    """Whatever a repository commits, reading it ends in a valid file or a `ConfigProblem`, never a crash."""
    try:
        parsed = parse(data, preview_v1())
    except ConfigProblem as e:
        assert e.line is None or e.line >= 1
    else:
        encode_inputs(to_config(parsed.document).inputs)
