# The platform's Gateway as a plain manifest: no provider, so the tests apply this module alone and check the
# Gateway against the Gateway API schema (tests/test_kubernetes.py); ../gateway.tf installs it.
#
# Listeners: every preview host (*.<preview_domain>) over HTTP and, with a wildcard certificate, HTTPS, open to
# routes from ghapp's namespaces (preview namespaces and ghapp's own, which routes unknown preview hosts to its
# gateway port); ghapp's own host open to ghapp's namespace only, so no preview can claim it.

locals {
  # Preview namespaces carry app.kubernetes.io/part-of=ghapp-preview (terraform/kubernetes), ghapp's carries
  # app.kubernetes.io/part-of=ghapp (deploy/kubernetes/namespace.yaml).
  preview_routes = {
    namespaces = {
      from = "Selector"
      selector = {
        matchExpressions = [{ key = "app.kubernetes.io/part-of", operator = "In", values = ["ghapp", "ghapp-preview"] }]
      }
    }
    kinds = [{ group = "gateway.networking.k8s.io", kind = "HTTPRoute" }]
  }
  ghapp_routes = {
    namespaces = {
      from     = "Selector"
      selector = { matchLabels = { "kubernetes.io/metadata.name" = var.ghapp_namespace } }
    }
    kinds = [{ group = "gateway.networking.k8s.io", kind = "HTTPRoute" }]
  }

  candidates = [
    {
      name          = "previews-http"
      protocol      = "HTTP"
      port          = 80
      hostname      = "*.${var.preview_domain}"
      allowedRoutes = local.preview_routes
    },
    var.wildcard_certificate_secret_name == "" ? null : {
      name          = "previews-https"
      protocol      = "HTTPS"
      port          = 443
      hostname      = "*.${var.preview_domain}"
      allowedRoutes = local.preview_routes
      tls           = { mode = "Terminate", certificateRefs = [{ kind = "Secret", name = var.wildcard_certificate_secret_name }] }
    },
    var.ghapp_host == "" || var.ghapp_certificate_secret_name == "" ? null : {
      name          = "ghapp-https"
      protocol      = "HTTPS"
      port          = 443
      hostname      = var.ghapp_host
      allowedRoutes = local.ghapp_routes
      tls           = { mode = "Terminate", certificateRefs = [{ kind = "Secret", name = var.ghapp_certificate_secret_name }] }
    },
  ]
  listeners = [for l in local.candidates : l if l != null]

  manifest = {
    apiVersion = "gateway.networking.k8s.io/v1"
    kind       = "Gateway"
    metadata = {
      name      = var.name
      namespace = var.namespace
      labels    = { "app.kubernetes.io/part-of" = "ghapp" }
    }
    spec = {
      gatewayClassName = var.gateway_class_name
      listeners        = local.listeners
    }
  }
}
