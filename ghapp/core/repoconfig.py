"""`.github/preview.yml`: what a repository says about its previews, and the plan a preview is applied with.

The configuration a preview is resolved with comes from the repository's file (at the PR's head commit; at the
base branch for a fork), else the organisation's `.github` repository, else the operator's defaults. Resolving it
(ghapp/workers/resolve.py) ends in a `Plan` (apply with these inputs) or a `Held` (not now, and why).

`parse` reads one file defensively (size, encoding, no anchors or aliases, bounded nesting, the safe loader) and
validates it against the published JSON Schema (ghapp/schemas/preview.v1.schema.json, given by the caller: reading
it is I/O); every problem names the line it is on. `merge` lays a repository's file over its organisation's, and
`encode_inputs` turns `inputs` into Terraform's `TF_VAR_` values."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import jsonschema
import yaml

from ghapp.core.contract import Access, Hold
from ghapp.core.model import Environment

PATH = ".github/preview.yml"
MAX_BYTES = 64 * 1024
MAX_DEPTH = 16
MAX_NODES = 1000  # keys and values in all: a real file has tens; validation costs time per node
MAX_INTEGER = 2**63 - 1  # larger numbers are no setting; Python cannot even print one of 4300 digits
MAX_DURATION = 366 * 86400  # ttl and sleep_after: longer ones overflow timestamps and are no setting either
# The module contract's own inputs: ghapp sets them, a configuration never does.
CONTRACT_INPUTS = frozenset(
    {"pr_number", "git_sha", "head_ref", "repository", "environment_id", "environment_name", "source_dir", "sleeping"}
)
# The platform settings of ghapp's own modules (terraform/kubernetes, terraform/local): where and how a preview is
# routed, isolated and authorised, and which cluster and paths Terraform uses. The operator sets them (TF_VAR_* in
# ghapp's environment, else the module's default); a pull request's file never does, or `pod_security_enforce:
# privileged` or `ingress_annotations` with an NGINX snippet would be a pull request's to choose.
OPERATOR_INPUTS = frozenset(
    {
        # terraform/kubernetes
        "preview_domain",
        "routing",
        "auth_mode",
        "gateway_parent_refs",
        "ghapp_namespace",
        "ghapp_service",
        "wake_service",
        "auth_request_headers",
        "auth_response_headers",
        "auth_signin_path",
        "ingress_class_name",
        "ingress_annotations",
        "tls_default_certificate",
        "tls_secret_name",
        "cert_manager_cluster_issuer",
        "image_pull_secret_name",
        "env_from_secret_name",
        "resource_quota",
        "run_as_user",
        "run_as_group",
        "pod_security_enforce",
        "network_policy_enabled",
        "proxy_namespace",
        "namespace_labels",
        "namespace_annotations",
        "namespace_delete_timeout",
        "kubeconfig_path",
        "kubeconfig_context",
        # terraform/local
        "git_url",
        "port_base",
        "state_dir",
        "lifetime_lock",
        "python",
    }
)
# Parts of a name that say "this is a secret": inputs end up in Terraform's state, plans and logs.
SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
    "access_key",
    "accesskey",
    "signing_key",
    "ssh_key",
)
# libyaml's loader when PyYAML was built with it (marks and errors alike; many times faster), else PyYAML's own.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TYPES = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "object": "a mapping",
}


class ConfigProblem(ValueError):
    """What is wrong with a configuration file, and on which line (None: the file as a whole)."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line is not None else reason)
        self.reason = reason
        self.line = line


@dataclasses.dataclass(frozen=True)
class RepoConfig:
    """Version 1 of the file; every key optional. A missing key keeps what ghapp does without a file."""

    module: str | None = None  # a catalog name (GHAPP_MODULES/<name>); None: the operator's module
    module_path: str | None = None  # `module: {path: ...}`: a Terraform directory in the repository
    deploy: str = "auto"  # auto | manual
    drafts: bool = True
    branches_ignore: tuple[str, ...] = ()
    labels_require: tuple[str, ...] = ()
    labels_ignore: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    wait_for: tuple[str, ...] = ()
    source: bool = False
    ttl: float | None = None  # seconds; None: the operator's GHAPP_ENV_TTL
    sleep_after: float | None = None  # seconds; None: the operator's default
    access: Access | None = None  # None: the operator's default
    max_previews: int | None = None  # None: the operator's GHAPP_MAX_PREVIEWS
    inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ConfigOrigin:
    """Where the effective configuration came from: `repository`, `organization` or `operator`; the file's blob
    SHA and the ref it was read at, when there is a file."""

    kind: str = "operator"
    blob_sha: str | None = None
    ref: str | None = None
    note: str | None = None  # what of the file was not applied, and why (ghapp's own words)

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        if self.kind == "operator":
            return f"the operator's defaults (no .github/preview.yml){note}"
        where = "the organization's .github repository" if self.kind == "organization" else "the repository"
        blob = f" (blob {self.blob_sha[:7]})" if self.blob_sha else ""
        return f".github/preview.yml from {where} at {self.ref}{blob}{note}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Apply the preview this way."""

    config: RepoConfig = RepoConfig()
    origin: ConfigOrigin = ConfigOrigin()
    module: str | None = None  # a Terraform directory on this machine; None: the operator's GHAPP_TERRAFORM_MODULE
    tf_vars: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the configuration's inputs, encoded
    source_dir: str | None = None  # the PR's code at the commit, read-only, when the configuration asks for it


@dataclasses.dataclass(frozen=True)
class Held:
    """Not applied now: `hold` says which kind of reason (skipped, waiting, invalid, queued), `reason` says it to
    people. A skipped preview that exists is destroyed; the other holds keep what exists as it is."""

    hold: Hold
    reason: str
    origin: ConfigOrigin = ConfigOrigin()
    config: RepoConfig | None = None


@dataclasses.dataclass(frozen=True)
class RepositoryFile:
    """A file's content, decoded as UTF-8 with `surrogateescape` (`raw` gives the bytes back exactly), and the SHA of
    its blob."""

    text: str
    blob_sha: str

    @property
    def raw(self) -> bytes:
        return self.text.encode("utf-8", "surrogateescape")

    @classmethod
    def of(cls, data: bytes, blob_sha: str) -> RepositoryFile:
        return cls(data.decode("utf-8", "surrogateescape"), blob_sha)


class FileTooLarge(ValueError):
    """`RepositoryFiles.read`: the file is larger than can be read (GitHub's contents API: 1 MB)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the file is {size} bytes, too large to read")
        self.size = size


class RepositoryFiles(Protocol):
    """A repository's content at a commit or branch: GitHub's contents and tarball API, or a local directory (the
    demo's sample repository)."""

    async def read(self, env: Environment, repository: str, path: str, ref: str | None) -> RepositoryFile | None:
        """The file at `ref` (None: the default branch); None if there is no such file (or the repository is not
        readable by this installation); `FileTooLarge` if it cannot be read whole."""
        ...

    async def tarball(self, env: Environment, sha: str, destination: str) -> None:
        """Write the repository's archive (gzip'd tar) at `sha` to the file `destination`."""
        ...


# --- reading one file -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParsedFile:
    """One valid file: the keys it sets (as written) and the line of each top-level key and input."""

    document: Mapping[str, Any]
    lines: Mapping[str, int | None]


def parse(data: bytes, schema: Mapping[str, Any]) -> ParsedFile:
    """Read and validate one `.github/preview.yml`; raise `ConfigProblem` naming the first problem's line."""
    if len(data) > MAX_BYTES:
        raise ConfigProblem(f"the file is {len(data)} bytes; at most {MAX_BYTES} bytes are read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigProblem("the file is not UTF-8 text", data[: e.start].count(b"\n") + 1) from None
    _check_events(text)
    try:
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            document = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        raise _yaml_problem(e) from None
    except yaml.YAMLError as e:
        raise ConfigProblem(f"not valid YAML: {e}") from None
    except (ValueError, IndexError, TypeError, OverflowError, AttributeError) as e:  # PyYAML's own failures
        raise ConfigProblem(f"not valid YAML: a value cannot be read ({type(e).__name__})") from None
    if document is None or node is None:  # empty, comments only, or `~`
        return ParsedFile({}, {})
    if not isinstance(document, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigProblem("the file must be a mapping of keys (like `module: kubernetes`)", _line(node))
    for key_node, _value in node.value:
        if not isinstance(key_node.value, str) or key_node.tag != "tag:yaml.org,2002:str":
            raise ConfigProblem(f"key {key_node.value!r} is not a name (quote it if it is one)", _line(key_node))
    problems = sorted(
        (_schema_problem(error, node) for error in jsonschema.Draft202012Validator(schema).iter_errors(document)),
        key=lambda p: (p.line or 0, p.reason),
    )
    if problems:
        raise problems[0]
    lines = {str(k.value): _line(k) for k, _v in node.value}
    for key, value in document.items():
        if key == "inputs":
            continue  # below, input by input
        if reason := _unusable(value):
            raise ConfigProblem(f"{key} {reason}", lines.get(key))
        if key in ("ttl", "sleep_after") and not _bounded_duration(value):
            raise ConfigProblem(f"{key} is longer than {MAX_DURATION // 86400} days", lines.get(key))
    inputs_node = _child(node, "inputs")
    for key_node, _value in inputs_node.value if isinstance(inputs_node, yaml.MappingNode) else ():
        if key_node.tag != "tag:yaml.org,2002:str":
            raise ConfigProblem(f"input name {key_node.value!r} is not a name (quote it if it is one)", _line(key_node))
        _check_input_name(str(key_node.value), _line(key_node))
        lines[f"inputs.{key_node.value}"] = _line(key_node)
        if reason := _unusable(document["inputs"][key_node.value]):
            raise ConfigProblem(f"input {key_node.value!r} {reason}", _line(key_node))
        if not _finite(document["inputs"][key_node.value]):
            raise ConfigProblem(
                f"input {key_node.value!r}: .nan and .inf are not numbers Terraform reads", _line(key_node)
            )
    return ParsedFile(document, lines)


def _check_events(text: str) -> None:
    """Refuse anchors and aliases (a few lines can expand to billions of nodes: the "billion laughs"), explicit
    tags, nesting deeper than MAX_DEPTH and more than MAX_NODES nodes, before anything is built."""
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ConfigProblem("anchors and aliases (& and *) are not allowed", _line(event))
            if (tag := getattr(event, "tag", None)) is not None:  # the safe loader's constructors of tags are fragile
                raise ConfigProblem(f"tags ({tag}) are not allowed: quote a value to make it text", _line(event))
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    raise ConfigProblem(f"more than {MAX_NODES} keys and values", _line(event))
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigProblem(f"nested deeper than {MAX_DEPTH} levels", _line(event))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as e:
        raise _yaml_problem(e) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (control characters)
        line = text[: e.position].count("\n") + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        raise ConfigProblem(f"not valid YAML: the character U+{code:04X} is not allowed", line) from None


def _yaml_problem(e: yaml.MarkedYAMLError) -> ConfigProblem:
    mark = e.problem_mark or e.context_mark
    reason = " ".join(str(part) for part in (e.context, e.problem) if part) or "not valid YAML"
    return ConfigProblem(f"not valid YAML: {reason}", mark.line + 1 if mark is not None else None)


def _line(node: yaml.Node | yaml.Event | None) -> int | None:
    mark = node.start_mark if node is not None else None
    return None if mark is None else int(mark.line) + 1


def _child(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        child: yaml.Node = node.value[key]
        return child
    return None


def _key_node(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((k for k, _v in node.value if k.value == key), None)
    return None


def _schema_problem(error: jsonschema.ValidationError, root: yaml.Node | None) -> ConfigProblem:
    """A validation error in words, at the line of the node it is about."""
    path = list(error.absolute_path)
    node = root
    for part in path:
        node = _child(node, part) if node is not None else None
    line = _line(node) if node is not None else None
    where = _where(path)
    schema, value = error.schema, error.instance
    if error.validator == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}) if isinstance(schema, dict) else ())
        unknown = sorted(k for k in value if k not in allowed)[0]
        key = _key_node(node, unknown) if node is not None else None
        close = difflib.get_close_matches(unknown, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
        scope = f" in {where}" if where else ""
        return ConfigProblem(f"unknown key {unknown!r}{scope}{hint}", _line(key) if key is not None else line)
    if "propertyNames" in error.schema_path:
        return ConfigProblem(
            f"input name {value!r} is not a name: letters, digits and _, not starting with a digit",
            _key_line(root, path, value, line),
        )
    if path and path[0] in ("ttl", "sleep_after") and error.validator in ("pattern", "type"):
        return ConfigProblem(f"{where}: {value!r} is not a duration (write e.g. 30m, 48h, 1h30m)", line)
    if path == ["module"] and error.validator == "oneOf":
        return ConfigProblem(
            "module: a catalog name (like `kubernetes`) or `{path: dir}` for a directory of this repository", line
        )
    if error.validator == "type":
        expected = schema.get("type") if isinstance(schema, dict) else None
        names = [expected] if isinstance(expected, str) else list(expected or [])
        words = [_TYPES.get(n, n) for n in names]
        wanted = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)
        return ConfigProblem(f"{where or 'the file'} must be {wanted}, not {_kind(value)}", line)
    if error.validator == "enum":
        options = ", ".join(str(o) for o in error.validator_value)
        return ConfigProblem(f"{where}: {value!r} is not one of {options}", line)
    if error.validator == "const" and path == ["version"]:
        return ConfigProblem(f"version: {value!r} is not supported (this ghapp reads version 1)", line)
    return ConfigProblem(f"{where or 'the file'}: {error.message}", line)


def _key_line(root: yaml.Node | None, path: list[Any], key: Any, default: int | None) -> int | None:
    node = root
    for part in path:
        node = _child(node, part) if node is not None else None
    found = _key_node(node, key) if node is not None else None
    return _line(found) if found is not None else default


def _where(path: Iterable[Any]) -> str:
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    return where


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, int | float):
        return f"{value!r} (a number)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__}"


def _unusable(value: Any) -> str | None:
    """Why a value that passed the schema cannot be used (stored as JSON in PostgreSQL, put in Terraform's
    environment), or None."""
    if isinstance(value, str) and "\x00" in value:
        return "holds a NUL character, which no environment variable or database text can"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        return f"is a number too large (at most {MAX_INTEGER})"
    if isinstance(value, list):
        return next((reason for v in value if (reason := _unusable(v))), None)
    if isinstance(value, dict):
        return next((reason for k, v in value.items() if (reason := _unusable(k) or _unusable(v))), None)
    return None


def _bounded_duration(text: str) -> bool:
    return all(len(n) <= 9 for n, _unit in _DURATION.findall(text)) and duration(text) <= MAX_DURATION


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _check_input_name(name: str, line: int | None) -> None:
    if name in CONTRACT_INPUTS:
        raise ConfigProblem(
            f"input {name!r} is set by ghapp itself (the module contract) and cannot be configured", line
        )
    if name in OPERATOR_INPUTS:
        raise ConfigProblem(
            f"input {name!r} is a platform setting of the operator's module (routing, isolation, access) and cannot "
            f"be configured; the operator sets it (TF_VAR_{name})",
            line,
        )
    lowered = name.lower()
    if any(word in lowered for word in SECRET_WORDS):
        raise ConfigProblem(
            f"input {name!r} looks like a secret: inputs are written to Terraform's state and shown in plans; "
            "secrets go in the operator's environment (GHAPP_TERRAFORM_ENV), never in .github/preview.yml",
            line,
        )


# --- from files to the configuration --------------------------------------------------------------------------------


def merge(organization: Mapping[str, Any] | None, repository: Mapping[str, Any] | None) -> dict[str, Any]:
    """The organisation's defaults under the repository's file, key by key (`inputs` name by name)."""
    merged = dict(organization or {})
    for key, value in (repository or {}).items():
        if key == "inputs" and isinstance(merged.get("inputs"), dict):
            merged["inputs"] = {**merged["inputs"], **value}
        else:
            merged[key] = value
    return merged


def duration(text: str) -> float:
    """`30m`, `48h`, `1h30m` → seconds (the schema has checked the form)."""
    return float(sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(text)))


def to_config(document: Mapping[str, Any]) -> RepoConfig:
    """A validated (and merged) document as a `RepoConfig`; missing keys keep ghapp's behaviour."""
    module = document.get("module")
    branches = document.get("branches") or {}
    labels = document.get("labels") or {}
    defaults = RepoConfig()
    return RepoConfig(
        module=module if isinstance(module, str) else None,
        module_path=module["path"] if isinstance(module, dict) else None,
        deploy=document.get("deploy", defaults.deploy),
        drafts=document.get("drafts", defaults.drafts),
        branches_ignore=tuple(branches.get("ignore", ())),
        labels_require=tuple(labels.get("require", ())),
        labels_ignore=tuple(labels.get("ignore", ())),
        paths=tuple(document.get("paths", ())),
        wait_for=tuple(document.get("wait_for", ())),
        source=document.get("source", defaults.source),
        ttl=duration(document["ttl"]) if "ttl" in document else None,
        sleep_after=duration(document["sleep_after"]) if "sleep_after" in document else None,
        access=Access(document["access"]) if "access" in document else None,
        max_previews=int(document["max_previews"]) if "max_previews" in document else None,
        inputs=dict(document.get("inputs") or {}),
    )


def encode_inputs(inputs: Mapping[str, Any]) -> dict[str, str]:
    """`inputs` as Terraform reads `TF_VAR_<name>` (name without the prefix → value): strings as they are, numbers,
    booleans as `true`/`false`, lists and maps in JSON (Terraform parses complex types' values as HCL, of which
    JSON is a subset)."""
    encoded = {}
    for name, value in inputs.items():
        if isinstance(value, str):
            encoded[name] = value
        elif isinstance(value, bool):
            encoded[name] = "true" if value else "false"
        else:
            encoded[name] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return encoded


@dataclasses.dataclass(frozen=True)
class ModuleRules:
    """What the operator allows as `module`: the catalog's names (GHAPP_MODULES), and whether this pull request
    may use a directory of its repository (`repository_module`: None if so, else the reason it may not)."""

    catalog: frozenset[str] = frozenset()
    repository_module: str | None = "this ghapp does not allow modules from repositories (GHAPP_REPO_MODULES)"


def check_module(parsed: ParsedFile, rules: ModuleRules) -> None:
    """The file's `module`, against what the operator allows; `ConfigProblem` at its line if it is not."""
    module = parsed.document.get("module")
    line = parsed.lines.get("module")
    if isinstance(module, str) and module not in rules.catalog:
        known = sorted(rules.catalog)
        close = difflib.get_close_matches(module, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (the catalog has: {', '.join(known) or 'nothing'})"
        raise ConfigProblem(f"module {module!r} is not in the operator's catalog{hint}", line)
    if isinstance(module, dict):
        if rules.repository_module is not None:
            raise ConfigProblem(f"module: {{path: ...}} is not allowed: {rules.repository_module}", line)
        path = str(module["path"])
        if path.startswith("/") or ".." in path.split("/"):
            raise ConfigProblem(f"module path {path!r} must be a relative path inside the repository", line)


def repository_matches(repository: str, patterns: Iterable[str]) -> bool:
    """Whether `owner/name` is one of `patterns` (`owner/name` or `owner/*`, case-insensitive, as GitHub)."""
    owner, _, _name = repository.lower().partition("/")
    return any(p.lower() in (repository.lower(), f"{owner}/*") for p in patterns)
