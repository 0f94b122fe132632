# A contract module that keeps its state in the app's own PostgreSQL through PG_CONN_STR.
terraform {
  backend "pg" {}
}

variable "environment_name" { type = string }
variable "git_sha" { type = string }

resource "terraform_data" "preview" {
  input = var.git_sha
}

output "preview_url" {
  value = "http://${var.environment_name}.preview.test/"
}
