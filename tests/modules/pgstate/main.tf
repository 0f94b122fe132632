# A contract module that keeps its state in the app's PostgreSQL through the PG_CONN_STR the app exports (the
# Terraform state role's, limited to the state schema). With TF_VAR_env_dump_dir it writes the environment its
# provisioner sees to `<dir>/<workspace>.env`, as a hostile module could read it.
terraform {
  backend "pg" {}
}

variable "environment_name" { type = string }
variable "git_sha" { type = string }
variable "env_dump_dir" {
  type    = string
  default = ""
}

resource "terraform_data" "preview" {
  input = var.git_sha

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = "if [ -n \"$DUMPS\" ]; then env > \"$DUMPS/$NAME.env\"; fi"
    environment = { DUMPS = var.env_dump_dir, NAME = var.environment_name }
  }
}

output "preview_url" {
  value = "http://${var.environment_name}.preview.test/"
}
