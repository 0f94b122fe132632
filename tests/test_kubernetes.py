"""Routing on Kubernetes, rendered for real and checked against the published schemas, without a cluster.

terraform/kubernetes keeps its route objects (HTTPRoutes with the ExternalAuth filter, Envoy Gateway's
SecurityPolicy, a ReferenceGrant, or Ingresses) in a provider-free module, ./routes. Here real Terraform applies
the parent's own variables.tf, locals.tf and routes.tf (kubernetes_manifest swapped for terraform_data, the
only change), fed with TF_VAR_* exactly as ghapp passes them (lists and maps JSON-encoded), and the objects it
renders are validated against the Gateway API v1.4.1 experimental-channel and Envoy Gateway v1.7.5 CRD schemas
vendored in tests/k8s. The same schemas check deploy/kubernetes (kustomize) and deploy/platform's Gateway."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.test_deploy import KUSTOMIZE_BASE, parse_module, render, resources, single, terraform, terraform_bin

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "terraform" / "kubernetes"
PLATFORM_GATEWAY = ROOT / "deploy" / "platform" / "gateway"
SCHEMAS = Path(__file__).resolve().parent / "k8s"

SCHEMA_FILES = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-v1.schema.json",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateway-v1.schema.json",
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): "referencegrant-v1beta1.schema.json",
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"): "securitypolicy-v1alpha1.schema.json",
}

# What ghapp sets for every run (the module contract) plus the operator's two required inputs.
CONTRACT = {
    "TF_VAR_pr_number": "12",
    "TF_VAR_git_sha": "0123456789abcdef0123456789abcdef01234567",
    "TF_VAR_head_ref": "feature/login",
    "TF_VAR_repository": "acme/web",
    "TF_VAR_environment_id": "7",
    "TF_VAR_environment_name": "pr-12-web-7",
    "TF_VAR_preview_domain": "preview.example.com",
    "TF_VAR_image_repository": "ghcr.io/acme/web",
}
NAMESPACE = "pr-12-web-7"
HOST = "pr-12-web-7.preview.example.com"
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")

# The only edits that turn the module's routing files into a root module that needs no provider.
PROVIDER_FREE = [
    ("kubernetes_namespace_v1.preview.metadata[0].name", "local.namespace"),
    ("kubernetes_service_v1.preview.metadata[0].name", "var.app_name"),
    ('resource "kubernetes_manifest" "route"', 'resource "terraform_data" "route"'),
    ("manifest = each.value", "input = each.value"),
]


# ---------------------------------------------------------------- schemas


def strict(schema: Any) -> Any:
    """A CRD's structural schema as JSON Schema, as strict as `kubectl apply` (field validation Strict): unknown
    fields are errors, int-or-string and nullable are spelled out. CEL rules (x-kubernetes-validations) are not
    evaluated: the tests below assert what those rules would check where it matters."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_schema(name: str) -> dict:
    return strict(json.loads((SCHEMAS / name).read_text()))


VALIDATORS = {key: jsonschema.Draft7Validator(load_schema(name)) for key, name in SCHEMA_FILES.items()}


def schema_errors(obj: dict) -> list[str]:
    validator = VALIDATORS[(obj["apiVersion"], obj["kind"])]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def check_object(obj: dict) -> None:
    """Valid against its CRD's schema (for the Gateway API and Envoy Gateway kinds) with a valid name."""
    name = obj["metadata"]["name"]
    assert DNS_SUBDOMAIN.match(name), f"{obj['kind']} name {name!r}"
    if "namespace" in obj["metadata"]:
        assert DNS_LABEL.match(obj["metadata"]["namespace"])
    if (obj["apiVersion"], obj["kind"]) in VALIDATORS:
        errors = schema_errors(obj)
        assert not errors, f"{obj['kind']} {name} does not match its CRD schema:\n" + "\n".join(errors)


def test_vendored_schemas_reject_what_the_api_server_would():
    """The validator is not a rubber stamp: an unknown field, a wrong enum and a missing required field fail."""
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "n"},
        "spec": {"hostnames": [HOST], "rules": [{"filters": [{"type": "ExternalAuth", "externalAuth": {}}]}]},
    }
    errors = schema_errors(route)
    assert any("'backendRef' is a required property" in e for e in errors), errors
    assert any("'protocol' is a required property" in e for e in errors), errors
    route["spec"]["rules"][0]["filters"][0] = {"type": "ExternalAuthz"}
    assert any("is not one of" in e for e in schema_errors(route))
    route["spec"]["rules"][0]["filters"] = []
    route["spec"]["hostname"] = HOST
    assert any("'hostname' was unexpected" in e for e in schema_errors(route))


# ---------------------------------------------------------------- rendering terraform/kubernetes's routes


@pytest.fixture(scope="module")
def routes_root(tmp_path_factory) -> Path:
    """The module's variables, locals and routes as a root module that needs no provider, initialised once."""
    root = tmp_path_factory.mktemp("routes-root")
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(MODULE / name, root / name)
    shutil.copytree(MODULE / "routes", root / "routes")
    text = (MODULE / "routes.tf").read_text()
    for old, new in PROVIDER_FREE:
        assert old in text, f"routes.tf no longer contains {old!r}: update PROVIDER_FREE"
        text = text.replace(old, new)
    assert "kubernetes_" not in re.sub(r"(?m)#.*$", "", text), "routes.tf uses another provider resource"
    (root / "routes.tf").write_text(text)
    (root / "outputs.tf").write_text(
        'output "manifests" {\n  value = module.routes.manifests\n}\n'
        'output "preview_url" {\n  value = local.preview_url\n}\n'
        'output "keys" {\n  value = keys(terraform_data.route)\n}\n'
    )
    init = terraform(["init", "-input=false", "-no-color"], root, root)
    assert init.returncode == 0, init.stdout + init.stderr
    return root


def run(root: Path, workspace: str, args: list[str], tf_vars: dict[str, str]) -> subprocess.CompletedProcess:
    rc = root / "terraformrc"
    rc.write_text("disable_checkpoint = true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1", TF_CLI_CONFIG_FILE=str(rc))
    env.update(CONTRACT, TF_WORKSPACE=workspace)
    env.update({f"TF_VAR_{k}": v for k, v in tf_vars.items()})
    return subprocess.run([terraform_bin(), *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def apply(root: Path, workspace: str, **tf_vars: str) -> dict[str, Any]:
    """Apply with these inputs in a workspace of their own; the outputs, values only."""
    done = run(root, workspace, ["apply", "-auto-approve", "-input=false", "-no-color"], tf_vars)
    assert done.returncode == 0, done.stdout + done.stderr
    out = run(root, workspace, ["output", "-json", "-no-color"], {})
    assert out.returncode == 0, out.stderr
    outputs = {k: v["value"] for k, v in json.loads(out.stdout).items()}
    assert sorted(outputs["keys"]) == sorted(outputs["manifests"]), "each manifest is one resource"
    for obj in outputs["manifests"].values():
        check_object(obj)
    return outputs


def refused(root: Path, workspace: str, **tf_vars: str) -> str:
    done = run(root, workspace, ["apply", "-auto-approve", "-input=false", "-no-color"], tf_vars)
    assert done.returncode != 0, f"accepted {tf_vars}"
    return " ".join((done.stdout + done.stderr).split())


def kinds(manifests: dict[str, dict]) -> list[str]:
    return sorted(f"{m['kind']}/{m['metadata']['namespace']}/{m['metadata']['name']}" for m in manifests.values())


def test_default_is_an_httproute_with_ghapps_external_auth(routes_root):
    out = apply(routes_root, "default")
    manifests = out["manifests"]
    assert kinds(manifests) == [
        f"HTTPRoute/{NAMESPACE}/preview",
        f"HTTPRoute/{NAMESPACE}/preview-ghapp",
        f"ReferenceGrant/ghapp/preview-{NAMESPACE}",
    ]
    assert out["preview_url"] == f"http://{HOST}/"

    route = manifests["httproute"]["spec"]
    assert route["hostnames"] == [HOST]
    assert route["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "previews", "namespace": "nginx-gateway"}
    ]
    (rule,) = route["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "preview", "namespace": NAMESPACE, "port": 80}
    ]
    (auth,) = rule["filters"]
    assert auth["type"] == "ExternalAuth"
    external = auth["externalAuth"]
    assert external["protocol"] == "HTTP"
    assert external["backendRef"] == {"group": "", "kind": "Service", "name": "ghapp", "namespace": "ghapp", "port": 80}
    assert external["http"]["path"] == "/gateway/auth"
    assert {"Cookie", "Origin"} <= set(external["http"]["allowedHeaders"])  # Origin: no sibling preview's requests
    # An empty list would copy every header of ghapp's answer into the request to the preview.
    assert external["http"]["allowedResponseHeaders"]
    assert "forwardBody" not in external, "the preview's request body is none of ghapp's business"

    # ghapp's own pages on the preview's host (sign-in hand-off, waking page): no access check in front.
    ghapp_route = manifests["httproute_ghapp"]["spec"]
    assert ghapp_route["hostnames"] == [HOST] and ghapp_route["parentRefs"] == route["parentRefs"]
    (ghapp_rule,) = ghapp_route["rules"]
    assert ghapp_rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/_ghapp"}}]
    assert "filters" not in ghapp_rule
    assert ghapp_rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "ghapp-gateway", "namespace": "ghapp", "port": 8081}
    ]

    # Cross-namespace references need ghapp's namespace to consent, for exactly these two Services.
    grant = manifests["reference_grant"]["spec"]
    assert grant["from"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": NAMESPACE}]
    assert sorted(t["name"] for t in grant["to"]) == ["ghapp", "ghapp-gateway"]
    assert all(t["group"] == "" and t["kind"] == "Service" for t in grant["to"])
    for obj in manifests.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ghapp"


def test_sleeping_routes_the_host_to_ghapps_wake_service(routes_root):
    manifests = apply(routes_root, "sleeping", sleeping="true")["manifests"]
    (rule,) = manifests["httproute"]["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "ghapp-gateway", "namespace": "ghapp", "port": 8081}
    ]
    # Waking is for people who may see the preview: the access check stays in front.
    assert [f["type"] for f in rule["filters"]] == ["ExternalAuth"]


def test_operator_inputs_arrive_json_encoded(routes_root):
    """Lists, maps and objects come as TF_VAR_* JSON, as ghapp encodes `inputs` and the operator's settings."""
    out = apply(
        routes_root,
        "operator",
        gateway_parent_refs=json.dumps(
            [
                {"name": "edge", "namespace": "gateways", "section_name": "https"},
                {"name": "internal", "namespace": "gateways"},
            ]
        ),
        ghapp_namespace="previews-system",
        ghapp_service=json.dumps({"name": "ghapp-web", "port": 8080}),
        wake_service=json.dumps({"name": "ghapp-wake", "port": 9000}),
        auth_request_headers=json.dumps(["Cookie", "X-Preview-Token"]),
        tls_default_certificate="true",
        app_name="web",
    )
    assert out["preview_url"] == f"https://{HOST}/"
    manifests = out["manifests"]
    route = manifests["httproute"]
    assert route["metadata"]["name"] == "web" and manifests["httproute_ghapp"]["metadata"]["name"] == "web-ghapp"
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "edge",
            "namespace": "gateways",
            "sectionName": "https",
        },
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "internal", "namespace": "gateways"},
    ]
    (rule,) = route["spec"]["rules"]
    external = rule["filters"][0]["externalAuth"]
    assert external["backendRef"]["name"] == "ghapp-web" and external["backendRef"]["port"] == 8080
    assert external["backendRef"]["namespace"] == "previews-system"
    assert external["http"]["allowedHeaders"] == ["Cookie", "X-Preview-Token"]
    assert rule["backendRefs"][0]["name"] == "web"
    grant = manifests["reference_grant"]
    assert grant["metadata"]["namespace"] == "previews-system"
    assert sorted(t["name"] for t in grant["spec"]["to"]) == ["ghapp-wake", "ghapp-web"]


def test_envoy_security_policy_instead_of_the_filter(routes_root):
    manifests = apply(routes_root, "envoy", auth_mode="envoy_security_policy")["manifests"]
    assert "filters" not in manifests["httproute"]["spec"]["rules"][0]
    policy = manifests["security_policy"]
    assert policy["metadata"]["namespace"] == NAMESPACE
    # Only the main route: /_ghapp (where signing in happens) must stay reachable without signing in.
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "preview"}
    ]
    ext = policy["spec"]["extAuth"]
    assert ext["http"]["path"] == "/gateway/auth"
    assert ext["http"]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "ghapp", "namespace": "ghapp", "port": 80}
    ]
    assert {"Cookie", "Origin"} <= set(ext["headersToExtAuth"])
    assert ext["http"]["headersToBackend"]
    assert "failOpen" not in ext, "an unreachable ghapp must close the preview, not open it"
    grant_from = manifests["reference_grant"]["spec"]["from"]
    assert {"group": "gateway.envoyproxy.io", "kind": "SecurityPolicy", "namespace": NAMESPACE} in grant_from


def test_auth_mode_none_asks_nobody(routes_root):
    manifests = apply(routes_root, "public", auth_mode="none")["manifests"]
    assert "security_policy" not in manifests
    assert "filters" not in manifests["httproute"]["spec"]["rules"][0]


def test_ingress_with_ingress_nginx_external_auth(routes_root):
    out = apply(routes_root, "ingress", routing="ingress", cert_manager_cluster_issuer="letsencrypt")
    manifests = out["manifests"]
    assert kinds(manifests) == [
        f"Ingress/{NAMESPACE}/preview",
        f"Ingress/{NAMESPACE}/preview-ghapp",
        f"Service/{NAMESPACE}/preview-ghapp",
    ]
    assert out["preview_url"] == f"https://{HOST}/"
    ingress = manifests["ingress"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"] == "http://ghapp.ghapp.svc.cluster.local:80/gateway/auth"
    assert notes["nginx.ingress.kubernetes.io/auth-signin"] == f"https://{HOST}/_ghapp/signin"
    assert notes["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": [HOST], "secretName": f"{NAMESPACE}-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == HOST
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": "preview", "port": {"number": 80}}

    ghapp = manifests["ingress_ghapp"]
    assert not any(k.startswith("nginx.ingress.kubernetes.io/auth-") for k in ghapp["metadata"].get("annotations", {}))
    (ghapp_path,) = ghapp["spec"]["rules"][0]["http"]["paths"]
    assert ghapp_path["path"] == "/_ghapp"
    assert ghapp_path["backend"]["service"] == {"name": "preview-ghapp", "port": {"number": 8081}}
    # An Ingress reaches only its own namespace's Services: this one names ghapp's wake service.
    wake = manifests["wake_external_service"]["spec"]
    assert wake["type"] == "ExternalName"
    assert wake["externalName"] == "ghapp-gateway.ghapp.svc.cluster.local"
    assert wake["ports"] == [{"name": "http", "port": 8081, "protocol": "TCP"}]


def test_sleeping_behind_an_ingress(routes_root):
    manifests = apply(routes_root, "ingress-sleeping", routing="ingress", sleeping="true")["manifests"]
    (path,) = manifests["ingress"]["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": "preview-ghapp", "port": {"number": 8081}}
    assert "nginx.ingress.kubernetes.io/auth-url" in manifests["ingress"]["metadata"]["annotations"]
    assert "tls" not in manifests["ingress"]["spec"]


@pytest.mark.parametrize(
    ("tf_vars", "message"),
    [
        ({"routing": "traefik"}, 'The routing must be "gateway" or "ingress".'),
        (
            {"auth_mode": "oauth2-proxy"},
            'The auth_mode must be "external_auth_filter", "envoy_security_policy" or "none".',
        ),
        ({"gateway_parent_refs": '[{"name": "Edge", "namespace": "gateways"}]'}, "The gateway_parent_refs must list"),
        ({"gateway_parent_refs": "[]"}, "The gateway_parent_refs must list"),
        ({"gateway_parent_refs": "previews"}, "gateway_parent_refs"),
        ({"auth_response_headers": "[]"}, "The auth_response_headers must be 1 to 16 header names."),
        ({"wake_service": '{"name": "ghapp-gateway", "port": 0}'}, "The wake_service must be"),
        ({"auth_signin_path": "https://evil.example/"}, "The auth_signin_path must be a path under /_ghapp/."),
        ({"routing": "ingress", "auth_mode": "envoy_security_policy"}, 'needs routing = "gateway"'),
        ({"tls_secret_name": "wildcard"}, 'are for routing = "ingress"'),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_error(routes_root, tf_vars, message):
    output = refused(routes_root, "refused", **tf_vars)
    assert message in output, output


# ---------------------------------------------------------------- the rest of the module


def test_sleeping_scales_the_deployment_to_zero():
    deployment = resources(parse_module("terraform/kubernetes"))["kubernetes_deployment_v1.preview"]
    spec = deployment["spec"][0]
    assert spec["replicas"] == "${var.sleeping ? 0 : var.replicas}"


def test_every_route_object_is_applied_and_nothing_else_routes():
    found = resources(parse_module("terraform/kubernetes"))
    assert "kubernetes_ingress_v1.preview" not in found
    route = found["kubernetes_manifest.route"]
    assert route["for_each"] == "${module.routes.manifests}"
    assert route["manifest"] == "${each.value}"


# ---------------------------------------------------------------- deploy/kubernetes and deploy/platform


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> list[dict[str, Any]]:
    return render(KUSTOMIZE_BASE, tmp_path_factory.mktemp("kustomize"))


def test_ghapp_is_published_through_the_gateway(base):
    routes = {r["metadata"]["name"]: r for r in base if r["kind"] == "HTTPRoute"}
    assert set(routes) == {"ghapp", "ghapp-gateway"}
    assert not [o for o in base if o["kind"] == "Ingress"], "ghapp's own Ingress is gone: it uses the Gateway"
    for route in routes.values():
        check_object(route)
        assert route["metadata"]["namespace"] == "ghapp"
        assert route["spec"]["parentRefs"] == [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "previews", "namespace": "nginx-gateway"}
        ]
    services = {s["metadata"]["name"]: s for s in base if s["kind"] == "Service"}
    deployment = single(base, "Deployment")
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    settings = single(base, "ConfigMap")["data"]
    assert ports["gateway"] == int(settings["GHAPP_GATEWAY_PORT"])

    # Webhooks only, on ghapp's host (the dashboard and API stay inside the cluster).
    (rule,) = routes["ghapp"]["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "Exact", "value": "/webhooks"}}]
    assert rule["backendRefs"] == [{"name": "ghapp", "port": services["ghapp"]["spec"]["ports"][0]["port"]}]

    # Every preview host that has no route of its own (a preview being created, or gone) reaches ghapp's gateway.
    catch_all = routes["ghapp-gateway"]["spec"]
    assert catch_all["hostnames"] == ["*." + settings["GHAPP_PREVIEW_DOMAIN"]]
    gateway_service = services["ghapp-gateway"]
    (port,) = gateway_service["spec"]["ports"]
    assert port["targetPort"] == "gateway"
    assert catch_all["rules"][0]["backendRefs"] == [{"name": "ghapp-gateway", "port": port["port"]}]
    assert gateway_service["spec"]["selector"] == services["ghapp"]["spec"]["selector"]

    # The module's defaults point at exactly these Services.
    variables = {
        name: body for block in parse_module("terraform/kubernetes")["variable"] for name, body in block.items()
    }
    assert variables["wake_service"]["default"] == {"name": "ghapp-gateway", "port": port["port"]}
    assert variables["ghapp_service"]["default"] == {
        "name": "ghapp",
        "port": services["ghapp"]["spec"]["ports"][0]["port"],
    }
    assert variables["ghapp_namespace"]["default"] == "ghapp"

    # Only the Gateway's proxies reach ghapp's pods, on both ports.
    policy = single(base, "NetworkPolicy")["spec"]
    (entry,) = policy["ingress"]
    assert entry["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nginx-gateway"}}}]
    assert {p["port"] for p in entry["ports"]} == {"http", "gateway"}


def test_rbac_and_admission_policy_cover_the_route_kinds(base, tmp_path):
    role = single(base, "ClusterRole")
    granted = {
        (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    for key in (
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.envoyproxy.io", "securitypolicies"),
        ("networking.k8s.io", "ingresses"),
        ("", "services"),
    ):
        assert {"get", "create", "patch", "delete"} <= granted[key], key
    assert ("gateway.networking.k8s.io", "referencegrants") not in granted, "ReferenceGrants: ghapp's namespace only"
    roles = [o for o in base if o["kind"] == "Role"]
    (grants,) = [r for r in roles if any("referencegrants" in rule["resources"] for rule in r["rules"])]
    assert grants["metadata"]["namespace"] == "ghapp"
    (binding,) = [b for b in base if b["kind"] == "RoleBinding" and b["roleRef"]["name"] == grants["metadata"]["name"]]
    assert binding["subjects"][0]["name"] == "ghapp"

    objects = render(KUSTOMIZE_BASE / "policy", tmp_path)
    policy = single(objects, "ValidatingAdmissionPolicy")
    rules = {
        (g, r)
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "referencegrants"),
        ("gateway.envoyproxy.io", "securitypolicies"),
    } <= rules
    text = json.dumps(policy["spec"]["validations"])
    assert "referencegrants" in text and "ghapp-gateway" in text


def test_platform_gateway_renders_valid(tmp_path):
    module = tmp_path / "gateway"
    shutil.copytree(PLATFORM_GATEWAY, module)
    assert terraform(["init", "-input=false", "-no-color"], module, tmp_path).returncode == 0
    done = terraform(
        [
            "apply",
            "-auto-approve",
            "-no-color",
            "-var=preview_domain=preview.example.com",
            "-var=ghapp_host=ghapp.example.com",
            "-var=wildcard_certificate_secret_name=preview-wildcard-tls",
            "-var=ghapp_certificate_secret_name=ghapp-tls",
        ],
        module,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = terraform(["output", "-json", "-no-color", "manifest"], module, tmp_path)
    gateway = json.loads(out.stdout)
    check_object(gateway)
    assert (gateway["metadata"]["name"], gateway["metadata"]["namespace"]) == ("previews", "nginx-gateway")
    # terraform/kubernetes attaches to exactly this Gateway by default.
    variables = {
        name: body for block in parse_module("terraform/kubernetes")["variable"] for name, body in block.items()
    }
    assert variables["gateway_parent_refs"]["default"] == [{"name": "previews", "namespace": "nginx-gateway"}]
    assert variables["proxy_namespace"]["default"] == gateway["metadata"]["namespace"]
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert listeners["previews-http"]["hostname"] == "*.preview.example.com"
    assert listeners["previews-https"]["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "preview-wildcard-tls"}]
    assert listeners["ghapp-https"]["hostname"] == "ghapp.example.com"
    # Preview namespaces attach to the preview listeners only; ghapp's host belongs to ghapp's namespace.
    preview_from = listeners["previews-https"]["allowedRoutes"]["namespaces"]
    assert preview_from == {
        "from": "Selector",
        "selector": {
            "matchExpressions": [
                {"key": "app.kubernetes.io/part-of", "operator": "In", "values": ["ghapp", "ghapp-preview"]}
            ]
        },
    }
    ghapp_from = listeners["ghapp-https"]["allowedRoutes"]["namespaces"]
    assert ghapp_from == {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "ghapp"}}}


def test_ghapps_configmap_settings_are_valid_module_inputs(routes_root, base):
    """The TF_VAR_* that deploy/kubernetes's ConfigMap gives every run pass the module's own validations, and the
    routes they make attach to the Gateway that ghapp's own routes use."""
    settings = single(base, "ConfigMap")["data"]
    tf_vars = {k.removeprefix("TF_VAR_"): v for k, v in settings.items() if k.startswith("TF_VAR_")}
    assert {"routing", "auth_mode", "gateway_parent_refs", "proxy_namespace"} <= set(tf_vars)
    out = apply(routes_root, "configmap", **tf_vars)
    assert out["preview_url"].endswith("." + settings["GHAPP_PREVIEW_DOMAIN"] + "/")
    ghapp_route = next(r for r in base if r["kind"] == "HTTPRoute" and r["metadata"]["name"] == "ghapp")
    assert out["manifests"]["httproute"]["spec"]["parentRefs"] == ghapp_route["spec"]["parentRefs"]
    policy = single(base, "NetworkPolicy")["spec"]["ingress"][0]["from"][0]
    assert policy["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == tf_vars["proxy_namespace"]
