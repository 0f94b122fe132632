# The route from the host to the preview (or, while it sleeps, to ghapp's wake service), with ghapp's access
# check in front: HTTPRoutes (Gateway API) or Ingresses, rendered by ./routes as plain manifests. The Gateway
# API and Envoy Gateway kinds have no typed resource in the provider, hence kubernetes_manifest, which reads
# their CRDs at plan time: install them first (deploy/platform does).
module "routes" {
  source = "./routes"

  routing   = var.routing
  auth_mode = var.auth_mode
  sleeping  = var.sleeping

  namespace    = kubernetes_namespace_v1.preview.metadata[0].name
  labels       = local.pod_labels
  app_name     = var.app_name
  host         = local.host
  scheme       = local.tls_enabled ? "https" : "http"
  service_name = kubernetes_service_v1.preview.metadata[0].name
  service_port = 80

  ghapp_namespace       = var.ghapp_namespace
  ghapp_service         = var.ghapp_service
  wake_service          = var.wake_service
  gateway_parent_refs   = var.gateway_parent_refs
  auth_request_headers  = var.auth_request_headers
  auth_response_headers = var.auth_response_headers
  auth_signin_path      = var.auth_signin_path

  ingress_class_name              = var.ingress_class_name
  ingress_annotations             = var.ingress_annotations
  ingress_certificate_annotations = var.cert_manager_cluster_issuer != "" ? { "cert-manager.io/cluster-issuer" = var.cert_manager_cluster_issuer } : {}
  tls_enabled                     = local.tls_enabled
  tls_secret_name                 = local.tls_secret
}

resource "kubernetes_manifest" "route" {
  for_each = module.routes.manifests

  manifest = each.value

  lifecycle {
    precondition {
      condition     = var.routing == "ingress" || (var.tls_secret_name == "" && var.cert_manager_cluster_issuer == "")
      error_message = "tls_secret_name and cert_manager_cluster_issuer are for routing = \"ingress\"; with a Gateway the HTTPS listener holds the certificate (tls_default_certificate = true)."
    }
    precondition {
      condition     = var.routing == "gateway" || var.auth_mode != "envoy_security_policy"
      error_message = "auth_mode = \"envoy_security_policy\" needs routing = \"gateway\" (Envoy Gateway); with an Ingress use \"external_auth_filter\" (ingress-nginx auth-url) or \"none\"."
    }
  }
}
