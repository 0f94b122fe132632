# Built-in Terraform only: terraform_data (1.4+) and local-exec. No providers, no backend block: the app
# chooses the backend and runs one workspace (TF_WORKSPACE) per environment.
terraform {
  required_version = ">= 1.4.0"
}
