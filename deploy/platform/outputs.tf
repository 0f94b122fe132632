output "cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name <cluster_name> --region <region>)."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the cluster's Kubernetes API."
  value       = aws_eks_cluster.this.endpoint
}

output "region" {
  description = "AWS region of the cluster."
  value       = var.region
}

output "load_balancer_hostname" {
  description = "Host name of the Gateway's load balancer that *.<preview_domain> points at."
  value       = local.load_balancer_hostname
}

output "preview_wildcard_record" {
  description = "The wildcard DNS record of the previews."
  value       = aws_route53_record.previews.fqdn
}

output "gateway" {
  description = "The Gateway the previews attach to (terraform/kubernetes's gateway_parent_refs)."
  value       = { name = module.gateway.manifest.metadata.name, namespace = local.gateway_namespace }
}

output "preview_module_settings" {
  description = "Settings for ghapp's ConfigMap (deploy/kubernetes/configmap.yaml) that follow from this platform."
  value = {
    TF_VAR_preview_domain          = var.preview_domain
    TF_VAR_routing                 = "gateway"
    TF_VAR_gateway_parent_refs     = jsonencode([{ name = module.gateway.manifest.metadata.name, namespace = local.gateway_namespace }])
    TF_VAR_auth_mode               = local.nginx ? "external_auth_filter" : "envoy_security_policy"
    TF_VAR_proxy_namespace         = local.proxy_namespace
    TF_VAR_tls_default_certificate = var.wildcard_certificate_secret_name != "" ? "true" : "false"
  }
}
