# Values derived from the inputs; they use nothing but var.*.

locals {
  host      = "${var.environment_name}.${var.preview_domain}"
  namespace = var.environment_name

  tls_secret  = var.tls_secret_name != "" ? var.tls_secret_name : (var.cert_manager_cluster_issuer != "" ? "${var.environment_name}-tls" : null)
  tls_enabled = var.tls_default_certificate || var.tls_secret_name != "" || var.cert_manager_cluster_issuer != ""
  preview_url = "${local.tls_enabled ? "https" : "http"}://${local.host}/"

  short_sha = substr(lower(var.git_sha), 0, 7)
  tag = var.image_tag != "" ? var.image_tag : replace(replace(replace(var.tag_template,
    "{git_sha}", lower(var.git_sha)),
    "{short_sha}", local.short_sha),
  "{pr_number}", tostring(var.pr_number))
  image = "${var.image_repository}:${local.tag}"

  # A label value: at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric. "acme/web" -> "acme.web".
  repository_label = trim(substr(replace(var.repository, "/[^A-Za-z0-9_.-]+/", "."), 0, 63), "-_.")

  labels = {
    "app.kubernetes.io/managed-by" = "ghapp"
    "app.kubernetes.io/part-of"    = "ghapp-preview"
    "app.kubernetes.io/instance"   = var.environment_name
    "ghapp/repository"             = local.repository_label
    "ghapp/pr-number"              = tostring(var.pr_number)
    "ghapp/environment-id"         = tostring(var.environment_id)
  }
  selector = {
    "app.kubernetes.io/name"     = var.app_name
    "app.kubernetes.io/instance" = var.environment_name
  }
  pod_labels = merge(local.labels, local.selector)

  annotations = {
    "ghapp/repository" = var.repository
    "ghapp/pr-number"  = tostring(var.pr_number)
  }

  probe_port = var.probe_port == 0 ? "http" : tostring(var.probe_port)

  rollout_timeout_seconds = tonumber(regex("^[0-9]+", var.rollout_timeout)) * lookup({ s = 1, m = 60, h = 3600 }, regex("[smh]$", var.rollout_timeout))

  builtin_env = {
    PORT                = tostring(var.container_port)
    PREVIEW_URL         = local.preview_url
    PREVIEW_REPOSITORY  = var.repository
    PREVIEW_PR_NUMBER   = tostring(var.pr_number)
    PREVIEW_HEAD_REF    = var.head_ref
    PREVIEW_GIT_SHA     = var.git_sha
    PREVIEW_ENVIRONMENT = var.environment_name
  }
  env = merge(var.env, local.builtin_env)

  writable_volumes = { for i, p in var.writable_paths : "writable-${i}" => p }
}
