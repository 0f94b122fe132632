# A test module following the contract: its behaviour is scripted through TF_VAR_delay / TF_VAR_fail_marker /
# TF_VAR_release_dir.
variable "pr_number" { type = number }
variable "git_sha" { type = string }
variable "head_ref" { type = string }
variable "repository" { type = string }
variable "environment_id" { type = number }
variable "environment_name" { type = string }

variable "delay" {
  type    = number
  default = 0
}

# If set, apply blocks until the file `<release_dir>/<environment_id>` exists (tests release runs one by one).
variable "release_dir" {
  type    = string
  default = ""
}

# If this file exists, apply fails (tests create and remove it to script failures).
variable "fail_marker" {
  type    = string
  default = ""
}

resource "terraform_data" "step" {
  count            = 2
  triggers_replace = [var.git_sha]
  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    command     = "while [ -n \"$RELEASE\" ] && [ ! -e \"$RELEASE/${var.environment_id}\" ]; do sleep 0.05; done; sleep ${var.delay}; if [ -n \"$FAIL\" ] && [ -e \"$FAIL\" ]; then echo scripted failure >&2; exit 3; fi; echo step ${count.index} done"
    environment = { FAIL = var.fail_marker, RELEASE = var.release_dir }
  }
}

output "preview_url" {
  value = "http://${var.environment_name}.preview.test/"
}

output "sha" {
  value = var.git_sha
}
