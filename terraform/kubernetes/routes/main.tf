# How a preview's host reaches it: the Kubernetes objects of the route, as plain manifests.
#
# No provider and no resource here, only values: the parent module applies them with kubernetes_manifest, and
# the tests apply this module alone (with real Terraform, no cluster) and check what it renders against the
# Gateway API and Envoy Gateway CRD schemas (tests/test_kubernetes.py).
#
# Two routes per preview:
#   <app_name>        every path of the host: the preview's Service, or ghapp's wake service while it sleeps;
#                     ghapp decides who may pass (auth_mode).
#   <app_name>-ghapp  /_ghapp on the same host: ghapp's own pages (sign-in hand-off, waking page), no access check.

locals {
  use_gateway = var.routing == "gateway"
  use_ingress = var.routing == "ingress"

  ghapp_service_host = "${var.ghapp_service.name}.${var.ghapp_namespace}.svc.cluster.local"
  wake_service_host  = "${var.wake_service.name}.${var.ghapp_namespace}.svc.cluster.local"
  # ghapp answers 200 (pass), or 401/302 (sign in). The proxies append the request's path: /gateway/auth/<path>.
  auth_path = "/gateway/auth"
  auth_url  = "http://${local.ghapp_service_host}:${var.ghapp_service.port}${local.auth_path}"

  ghapp_paths = "/_ghapp"
  ghapp_route = "${var.app_name}-ghapp"

  metadata = {
    namespace = var.namespace
    labels    = var.labels
  }

  # ---------------------------------------------------------------- Gateway API

  parent_refs = [for p in var.gateway_parent_refs : merge(
    { group = "gateway.networking.k8s.io", kind = "Gateway", name = p.name, namespace = p.namespace },
    { for k, v in { sectionName = p.section_name } : k => v if v != null },
  )]

  wake_backend = {
    group     = ""
    kind      = "Service"
    name      = var.wake_service.name
    namespace = var.ghapp_namespace
    port      = var.wake_service.port
  }
  preview_backend = {
    group     = ""
    kind      = "Service"
    name      = var.service_name
    namespace = var.namespace
    port      = var.service_port
  }

  external_auth_filter = {
    type = "ExternalAuth"
    externalAuth = {
      protocol = "HTTP"
      backendRef = {
        group     = ""
        kind      = "Service"
        name      = var.ghapp_service.name
        namespace = var.ghapp_namespace
        port      = var.ghapp_service.port
      }
      http = {
        path                   = local.auth_path
        allowedHeaders         = var.auth_request_headers
        allowedResponseHeaders = var.auth_response_headers
      }
    }
  }

  httproute = {
    apiVersion = "gateway.networking.k8s.io/v1"
    kind       = "HTTPRoute"
    metadata   = merge(local.metadata, { name = var.app_name })
    spec = {
      parentRefs = local.parent_refs
      hostnames  = [var.host]
      rules = [merge(
        {
          matches     = [{ path = { type = "PathPrefix", value = "/" } }]
          backendRefs = [var.sleeping ? local.wake_backend : local.preview_backend]
        },
        { for k, v in { filters = [local.external_auth_filter] } : k => v if var.auth_mode == "external_auth_filter" },
      )]
    }
  }

  httproute_ghapp = {
    apiVersion = "gateway.networking.k8s.io/v1"
    kind       = "HTTPRoute"
    metadata   = merge(local.metadata, { name = local.ghapp_route })
    spec = {
      parentRefs = local.parent_refs
      hostnames  = [var.host]
      rules = [{
        matches     = [{ path = { type = "PathPrefix", value = local.ghapp_paths } }]
        backendRefs = [local.wake_backend]
      }]
    }
  }

  # Envoy Gateway's own external authorization, attached to the main route only.
  security_policy = {
    apiVersion = "gateway.envoyproxy.io/v1alpha1"
    kind       = "SecurityPolicy"
    metadata   = merge(local.metadata, { name = var.app_name })
    spec = {
      targetRefs = [{ group = "gateway.networking.k8s.io", kind = "HTTPRoute", name = var.app_name }]
      extAuth = {
        headersToExtAuth = var.auth_request_headers
        http = {
          backendRefs      = [{ group = "", kind = "Service", name = var.ghapp_service.name, namespace = var.ghapp_namespace, port = var.ghapp_service.port }]
          path             = local.auth_path
          headersToBackend = var.auth_response_headers
        }
      }
    }
  }

  # A route may only send traffic to a Service of another namespace that allows it: ghapp's namespace allows
  # this preview's namespace to reach ghapp's two Services, by name, and nothing else.
  reference_grant = {
    apiVersion = "gateway.networking.k8s.io/v1beta1"
    kind       = "ReferenceGrant"
    metadata = {
      name      = "preview-${var.namespace}"
      namespace = var.ghapp_namespace
      labels    = var.labels
    }
    spec = {
      from = [for f in [
        { group = "gateway.networking.k8s.io", kind = "HTTPRoute", namespace = var.namespace },
        { group = "gateway.envoyproxy.io", kind = "SecurityPolicy", namespace = var.namespace },
      ] : f if f.kind == "HTTPRoute" || var.auth_mode == "envoy_security_policy"]
      to = [
        { group = "", kind = "Service", name = var.wake_service.name },
        { group = "", kind = "Service", name = var.ghapp_service.name },
      ]
    }
  }

  # ---------------------------------------------------------------- Ingress (ingress-nginx)

  # An Ingress reaches Services of its own namespace only: this one stands for ghapp's wake service.
  wake_external_service = {
    apiVersion = "v1"
    kind       = "Service"
    metadata   = merge(local.metadata, { name = local.ghapp_route })
    spec = {
      type         = "ExternalName"
      externalName = local.wake_service_host
      ports        = [{ name = "http", port = var.wake_service.port, protocol = "TCP" }]
    }
  }

  # No secretName: the controller's default (wildcard) certificate.
  ingress_tls = { for k, v in {
    tls = [merge({ hosts = [var.host] }, { for k, v in { secretName = var.tls_secret_name } : k => v if v != null })]
  } : k => v if var.tls_enabled }

  auth_annotations = var.auth_mode == "none" ? {} : {
    "nginx.ingress.kubernetes.io/auth-url"    = local.auth_url
    "nginx.ingress.kubernetes.io/auth-signin" = "${var.scheme}://${var.host}${var.auth_signin_path}"
  }

  ingress = {
    apiVersion = "networking.k8s.io/v1"
    kind       = "Ingress"
    metadata = merge(local.metadata, {
      name        = var.app_name
      annotations = merge(var.ingress_annotations, var.ingress_certificate_annotations, local.auth_annotations)
    })
    spec = merge(local.ingress_tls, {
      ingressClassName = var.ingress_class_name
      rules = [{
        host = var.host
        http = {
          paths = [{
            path     = "/"
            pathType = "Prefix"
            backend = {
              service = var.sleeping ? { name = local.ghapp_route, port = { number = var.wake_service.port } } : { name = var.service_name, port = { number = var.service_port } }
            }
          }]
        }
      }]
    })
  }

  ingress_ghapp = {
    apiVersion = "networking.k8s.io/v1"
    kind       = "Ingress"
    metadata   = merge(local.metadata, { name = local.ghapp_route, annotations = var.ingress_annotations })
    spec = merge(local.ingress_tls, {
      ingressClassName = var.ingress_class_name
      rules = [{
        host = var.host
        http = {
          paths = [{
            path     = local.ghapp_paths
            pathType = "Prefix"
            backend  = { service = { name = local.ghapp_route, port = { number = var.wake_service.port } } }
          }]
        }
      }]
    })
  }

  all_manifests = {
    httproute             = local.httproute
    httproute_ghapp       = local.httproute_ghapp
    reference_grant       = local.reference_grant
    security_policy       = local.security_policy
    ingress               = local.ingress
    ingress_ghapp         = local.ingress_ghapp
    wake_external_service = local.wake_external_service
  }
  wanted = {
    httproute             = local.use_gateway
    httproute_ghapp       = local.use_gateway
    reference_grant       = local.use_gateway
    security_policy       = local.use_gateway && var.auth_mode == "envoy_security_policy"
    ingress               = local.use_ingress
    ingress_ghapp         = local.use_ingress
    wake_external_service = local.use_ingress
  }
  manifests = { for k, v in local.all_manifests : k => v if local.wanted[k] }
}
