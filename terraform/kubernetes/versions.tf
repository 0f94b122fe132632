# No backend block: the app chooses the state backend and runs one workspace (TF_WORKSPACE) per environment.
# To keep state in the app's PostgreSQL (the app exports PG_CONN_STR to every run), or in S3/GCS, add a file
# backend.tf next to this one; see README.md, "State".
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.36"
    }
  }
}

# With no settings the provider uses, in this order: KUBE_* environment variables (KUBE_CONFIG_PATH,
# KUBE_CTX, KUBE_HOST, ...), or the in-cluster service account when Terraform runs inside a pod (ghapp's
# Deployment in deploy/kubernetes). kubeconfig_path / kubeconfig_context point it at a kubeconfig instead.
provider "kubernetes" {
  config_path    = var.kubeconfig_path != "" ? var.kubeconfig_path : null
  config_context = var.kubeconfig_context != "" ? var.kubeconfig_context : null
}
