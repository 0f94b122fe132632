# A test module following the contract that writes the environment Terraform's processes see to files in
# TF_VAR_env_dump_dir (on apply and on destroy), never to the log. Fails like `scripted` when TF_VAR_fail_marker
# names a file that exists.
variable "pr_number" { type = number }
variable "git_sha" { type = string }
variable "head_ref" { type = string }
variable "repository" { type = string }
variable "environment_id" { type = number }
variable "environment_name" { type = string }

variable "env_dump_dir" { type = string }

variable "fail_marker" {
  type    = string
  default = ""
}

resource "terraform_data" "dump" {
  input            = var.env_dump_dir
  triggers_replace = [var.git_sha]

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = "env > \"$(mktemp \"$DUMPS/apply-XXXXXX\")\"; if [ -n \"$FAIL\" ] && [ -e \"$FAIL\" ]; then echo scripted failure >&2; exit 3; fi; echo dumped"
    environment = { DUMPS = var.env_dump_dir, FAIL = var.fail_marker }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["/bin/sh", "-c"]
    command     = "env > \"$(mktemp \"$DUMPS/destroy-XXXXXX\")\"; echo dumped"
    environment = { DUMPS = self.input }
  }
}

output "preview_url" {
  value = "http://${var.environment_name}.preview.test/"
}
