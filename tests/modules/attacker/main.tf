# A hostile pull request's module: its local-exec (running as whatever user ghapp gives runs) tries every door to
# the app's secrets and database and writes what it got to its log and to a report file. tests/test_isolation.py
# asserts that every door stayed shut.
variable "environment_name" { type = string }
variable "git_sha" { type = string }
variable "attack_targets" {
  type    = string # JSON: {"pids": [...], "files": [...], "dirs": [...], "sockets": [...], "tcp": [...]}
  default = "{}"
}
variable "report_file" {
  type    = string
  default = ""
}

resource "terraform_data" "attack" {
  input = var.git_sha

  provisioner "local-exec" {
    interpreter = ["python3", "-c"]
    command     = file("${path.module}/attack.py")
    environment = {
      ATTACK_TARGETS = var.attack_targets
      ATTACK_REPORT  = var.report_file
    }
  }
}

output "preview_url" {
  value = "http://${var.environment_name}.preview.test/"
}
