# Values only: no provider, so tests can apply this module with nothing but Terraform.
terraform {
  required_version = ">= 1.5.0"
}
