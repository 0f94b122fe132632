# The previews' front door, Gateway API: the experimental-channel CRDs (the HTTPRoute ExternalAuth filter is
# experimental in Gateway API 1.4), a maintained controller, and one Gateway behind one load balancer; each
# preview attaches an HTTPRoute to it (terraform/kubernetes), and wildcard DNS brings the traffic (dns.tf).
#
# Controllers (gateway_controller):
#   nginx-gateway-fabric  implements the HTTPRoute ExternalAuth filter (with experimental features on):
#                         terraform/kubernetes's default auth_mode = "external_auth_filter".
#   envoy-gateway         asks ghapp through its SecurityPolicy extAuth: auth_mode = "envoy_security_policy".
# ingress-nginx, which this module installed before, reached end of life in March 2026 (docs/operations.md,
# "From ingress-nginx to Gateway API").

locals {
  nginx = var.gateway_controller == "nginx-gateway-fabric"

  # The controller's namespace holds the Gateway; NGINX Gateway Fabric runs the Gateway's proxies next to it,
  # Envoy Gateway in its own namespace.
  gateway_namespace  = local.nginx ? "nginx-gateway" : "envoy-gateway-system"
  gateway_class_name = local.nginx ? "nginx" : "ghapp-previews"
  proxy_namespace    = local.gateway_namespace

  envoy_gateway_class = {
    apiVersion = "gateway.networking.k8s.io/v1"
    kind       = "GatewayClass"
    metadata   = { name = local.gateway_class_name }
    spec       = { controllerName = "gateway.envoyproxy.io/gatewayclass-controller" }
  }

  # NGINX accepts request bodies up to 1 MB unless told otherwise; GitHub's deliveries reach 25 MB and previews
  # take uploads. Envoy streams bodies without such a limit.
  nginx_body_size = {
    apiVersion = "gateway.nginx.org/v1alpha1"
    kind       = "ClientSettingsPolicy"
    metadata   = { name = "previews-body-size", namespace = local.gateway_namespace }
    spec = {
      targetRef = { group = "gateway.networking.k8s.io", kind = "Gateway", name = module.gateway.manifest.metadata.name }
      body      = { maxSize = var.max_request_body_size }
    }
  }
}

# Gateway API v1.4.1 CRDs, experimental channel (plus Envoy Gateway's own CRDs when it is the controller), from
# Envoy Gateway's CRD chart: a maintained, versioned package of exactly the upstream CRDs.
resource "helm_release" "gateway_crds" {
  name             = "gateway-crds"
  repository       = "oci://docker.io/envoyproxy"
  chart            = "gateway-crds-helm"
  version          = var.envoy_gateway_chart_version
  namespace        = local.gateway_namespace
  create_namespace = true
  wait             = true

  values = [yamlencode({
    crds = {
      gatewayAPI   = { enabled = true, channel = "experimental" }
      envoyGateway = { enabled = !local.nginx }
    }
  })]

  depends_on = [aws_eks_node_group.default, aws_eks_addon.vpc_cni]
}

resource "helm_release" "nginx_gateway_fabric" {
  count = local.nginx ? 1 : 0

  name       = "ngf"
  repository = "oci://ghcr.io/nginx/charts"
  chart      = "nginx-gateway-fabric"
  version    = var.nginx_gateway_fabric_chart_version
  namespace  = local.gateway_namespace
  wait       = true
  timeout    = 900

  # The chart's crds/ holds NGINX Gateway Fabric's own CRDs only (the Gateway API ones come from gateway_crds).
  values = [yamlencode({
    nginxGateway = {
      replicas                  = 2
      gatewayClassName          = local.gateway_class_name
      gwAPIExperimentalFeatures = { enable = true }
      snippetsFilters           = { enable = false }
    }
    nginx = {
      replicas = var.proxy_replicas
      service = {
        type                  = "LoadBalancer"
        externalTrafficPolicy = "Local"
      }
    }
  })]

  depends_on = [helm_release.gateway_crds]
}

resource "helm_release" "envoy_gateway" {
  count = local.nginx ? 0 : 1

  name       = "eg"
  repository = "oci://docker.io/envoyproxy"
  chart      = "gateway-helm"
  version    = var.envoy_gateway_chart_version
  namespace  = local.gateway_namespace
  # Its crds/ repeats what gateway_crds installed.
  skip_crds = true
  wait      = true
  timeout   = 900

  depends_on = [helm_release.gateway_crds]
}

module "gateway" {
  source = "./gateway"

  namespace                        = local.gateway_namespace
  gateway_class_name               = local.gateway_class_name
  preview_domain                   = var.preview_domain
  ghapp_host                       = var.ghapp_host
  wildcard_certificate_secret_name = var.wildcard_certificate_secret_name
  ghapp_certificate_secret_name    = var.ghapp_certificate_secret_name
}

resource "helm_release" "gateway" {
  name      = "previews-gateway"
  chart     = "${path.module}/charts/previews-gateway"
  namespace = local.gateway_namespace
  wait      = true

  values = [yamlencode({
    objects = local.nginx ? [module.gateway.manifest, local.nginx_body_size] : [local.envoy_gateway_class, module.gateway.manifest]
  })]

  depends_on = [helm_release.nginx_gateway_fabric, helm_release.envoy_gateway]
}

# The Gateway's address (its load balancer), once the controller has provisioned it.
data "kubernetes_resource" "gateway" {
  api_version = "gateway.networking.k8s.io/v1"
  kind        = "Gateway"

  metadata {
    name      = module.gateway.manifest.metadata.name
    namespace = local.gateway_namespace
  }

  depends_on = [helm_release.gateway]
}

locals {
  load_balancer_hostname = data.kubernetes_resource.gateway.object.status.addresses[0].value
}
