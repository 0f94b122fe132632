# Contract inputs (set by the app as TF_VAR_*).

variable "pr_number" {
  type        = number
  description = "Pull request number."

  validation {
    condition     = var.pr_number >= 1 && floor(var.pr_number) == var.pr_number
    error_message = "The pr_number must be a positive whole number."
  }
}

variable "git_sha" {
  type        = string
  description = "Commit to preview (hex, 7 to 40 characters)."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{7,40}$", var.git_sha))
    error_message = "The git_sha must be 7 to 40 hexadecimal characters."
  }
}

variable "head_ref" {
  type        = string
  description = "Head branch of the pull request (user text: shown HTML-escaped, never run)."
}

variable "repository" {
  type        = string
  description = "Repository as owner/name."

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.repository))
    error_message = "The repository must look like owner/name."
  }
}

variable "environment_id" {
  type        = number
  description = "Unique, stable integer of the environment; picks the port."

  validation {
    condition     = var.environment_id >= 0 && floor(var.environment_id) == var.environment_id
    error_message = "The environment_id must be a non-negative whole number."
  }
}

variable "environment_name" {
  type        = string
  description = "DNS label (at most 63 characters) naming the environment; also its directory name."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.environment_name))
    error_message = "The environment_name must be a DNS label: lowercase letters, digits and '-', at most 63 characters, no leading or trailing '-'."
  }
}

variable "sleeping" {
  type        = bool
  default     = false
  description = "Asleep: the preview's process is stopped; its directory (and checkout) is kept for the wake."
}

# Operator configuration.

variable "source_dir" {
  type        = string
  default     = ""
  description = "The pull request's code at git_sha, read-only (the app sets it for `source: true`). If set, it is copied into a writable source/ directory of the environment (again when source_dir changes) and command runs there."
}

variable "command" {
  type        = string
  default     = ""
  description = "Command run with /bin/sh -c instead of the built-in page server; PORT is set in its environment. Runs in the copy of source_dir when set, in the checkout when git_url is set, else in the environment's directory."
}

variable "git_url" {
  type        = string
  default     = ""
  description = "If set, clone this repository into the environment's directory and check out git_sha before running command."
}

variable "port_base" {
  type        = number
  default     = 20000
  description = "The preview listens on 127.0.0.1 at port_base + environment_id % 10000."

  validation {
    condition     = var.port_base >= 1 && var.port_base <= 65535 && floor(var.port_base) == var.port_base
    error_message = "The port_base must be a whole number from 1 to 65535."
  }
}

variable "state_dir" {
  type        = string
  default     = ""
  description = "Directory holding one sub-directory per environment (pid file, log, checkout). Default: previews/ next to the Terraform working directory."
}

variable "ready_timeout" {
  type        = number
  default     = 60
  description = "Seconds apply waits for the preview to answer HTTP."

  validation {
    condition     = var.ready_timeout > 0
    error_message = "The ready_timeout must be positive."
  }
}

variable "lifetime_lock" {
  type        = string
  default     = ""
  description = "If set, a file path: the preview stops by itself as soon as no other process holds an flock on it."
}

variable "python" {
  type        = string
  default     = "python3"
  description = "Python interpreter that runs preview.py."
}
