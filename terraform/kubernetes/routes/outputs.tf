output "manifests" {
  description = "The route's Kubernetes objects by role (httproute, httproute_ghapp, reference_grant, security_policy, ingress, ingress_ghapp, wake_external_service), for kubernetes_manifest."
  value       = local.manifests
}
