terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.36"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }

  # State of the platform itself (not of the previews): add a backend of your own, for example
  #   backend "s3" { bucket = "acme-terraform-state", key = "ghapp/platform.tfstate", region = "us-east-1", use_lockfile = true }
}
