# A test module following the contract that echoes the configuration's inputs (`inputs` of .github/preview.yml, as
# TF_VAR_*) back as outputs, typed, and lists two services in `preview_urls`.
variable "pr_number" { type = number }
variable "git_sha" { type = string }
variable "head_ref" { type = string }
variable "repository" { type = string }
variable "environment_id" { type = number }
variable "environment_name" { type = string }

variable "greeting" { type = string } # no default: a destroy needs it too
variable "replicas" {
  type    = number
  default = 0
}
variable "debug" {
  type    = bool
  default = false
}
variable "hosts" {
  type    = list(string)
  default = []
}
variable "limits" {
  type    = map(string)
  default = {}
}

output "preview_url" {
  value = "http://${var.environment_name}.preview.test/"
}

output "preview_urls" {
  value = {
    web = "http://${var.environment_name}.preview.test/"
    api = "http://api-${var.environment_name}.preview.test/"
    "<b>docs</b>" = "javascript:alert(1)" # never a link, never markup
  }
}

output "echo" {
  value = jsonencode({
    greeting = var.greeting, replicas = var.replicas, debug = var.debug, hosts = var.hosts, limits = var.limits,
    git_sha  = var.git_sha
  })
}
