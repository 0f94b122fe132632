output "preview_url" {
  description = "Where the preview answers: https://<host>/ with TLS, else http://<host>/. Known once the rollout is done (wait_for_rollout)."
  value       = local.preview_url
  depends_on  = [kubernetes_deployment_v1.preview, kubernetes_manifest.route]
}

output "namespace" {
  description = "The preview's namespace; deleting it removes the preview."
  value       = kubernetes_namespace_v1.preview.metadata[0].name
}

output "host" {
  description = "Host name of the preview (its HTTPRoute's or Ingress's)."
  value       = local.host
}

output "image" {
  description = "Image the preview runs."
  value       = local.image
}

output "deployment" {
  description = "Name of the Deployment in the namespace (kubectl -n <namespace> rollout status deployment/<name>)."
  value       = kubernetes_deployment_v1.preview.metadata[0].name
}

output "routes" {
  description = "The route objects, as Kind/namespace/name (HTTPRoutes and their ReferenceGrant, or Ingresses)."
  value       = sort([for m in module.routes.manifests : "${m.kind}/${m.metadata.namespace}/${m.metadata.name}"])
}
