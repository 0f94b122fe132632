# The preview is a detached process group led by `preview.py supervise`. Two resources, because Terraform
# does not run destroy-time provisioners of a tainted resource, and an interrupted create leaves "process"
# tainted: "workdir" (never tainted once created) stops whatever runs in the directory and removes it.
# Every value reaches preview.py through the provisioner's environment, never through a shell string.
# Destroy-time provisioners may only reference self, so the paths travel in `input`.

locals {
  port      = var.port_base + var.environment_id % 10000
  state_dir = var.state_dir != "" ? abspath(var.state_dir) : abspath("${path.root}/previews")
  env_dir   = "${local.state_dir}/${var.environment_name}"
  log_file  = "${local.env_dir}/preview.log"

  # Relative to Terraform's working directory, so a destroy run from another copy of the module still works.
  script = "${path.module}/preview.py"
}

resource "terraform_data" "workdir" {
  triggers_replace = [local.env_dir]

  input = {
    python  = var.python
    script  = local.script
    name    = var.environment_name
    env_dir = local.env_dir
  }

  provisioner "local-exec" {
    interpreter = [self.input.python, self.input.script]
    command     = "init"
    environment = {
      PREVIEW_NAME    = self.input.name
      PREVIEW_ENV_DIR = self.input.env_dir
    }
  }

  # Stops the process group from the pid file (even when "process" is tainted) and removes the directory.
  provisioner "local-exec" {
    when        = destroy
    interpreter = [self.input.python, self.input.script]
    command     = "remove"
    environment = {
      PREVIEW_NAME    = self.input.name
      PREVIEW_ENV_DIR = self.input.env_dir
    }
  }
}

# Sleeping (the contract's `sleeping`): no process, everything else kept; waking starts it again.
resource "terraform_data" "process" {
  count = var.sleeping ? 0 : 1

  triggers_replace = [
    var.git_sha, var.command, var.git_url, local.port, local.env_dir,
    var.repository, var.pr_number, var.head_ref, var.lifetime_lock,
    var.source_dir,
  ]

  lifecycle {
    precondition {
      condition     = local.port <= 65535
      error_message = "The port (port_base + environment_id % 10000) must be at most 65535."
    }
    precondition {
      condition     = var.source_dir == "" || var.git_url == ""
      error_message = "Set source_dir or git_url, not both."
    }
  }

  input = {
    python  = var.python
    script  = local.script
    name    = var.environment_name
    env_dir = terraform_data.workdir.output.env_dir
  }

  # Start (after stopping a leftover) and wait until http://127.0.0.1:<port>/ answers.
  provisioner "local-exec" {
    interpreter = [self.input.python, self.input.script]
    command     = "start"
    environment = {
      PREVIEW_NAME          = self.input.name
      PREVIEW_ENV_DIR       = self.input.env_dir
      PREVIEW_PORT          = tostring(local.port)
      PREVIEW_COMMAND       = var.command
      PREVIEW_GIT_URL       = var.git_url
      PREVIEW_SOURCE_DIR    = var.source_dir
      PREVIEW_GIT_SHA       = var.git_sha
      PREVIEW_HEAD_REF      = var.head_ref
      PREVIEW_REPOSITORY    = var.repository
      PREVIEW_PR_NUMBER     = tostring(var.pr_number)
      PREVIEW_READY_TIMEOUT = tostring(var.ready_timeout)
      PREVIEW_LIFETIME_LOCK = var.lifetime_lock
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = [self.input.python, self.input.script]
    command     = "stop"
    environment = {
      PREVIEW_NAME    = self.input.name
      PREVIEW_ENV_DIR = self.input.env_dir
    }
  }
}
