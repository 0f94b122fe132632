# One namespace per environment holds everything of the preview, so deleting the namespace removes it all.
# Every other resource references the namespace, so Terraform creates it first and deletes it last (the route
# objects are in routes.tf, the derived values in locals.tf).

resource "kubernetes_namespace_v1" "preview" {
  metadata {
    name = local.namespace
    labels = merge(var.namespace_labels, local.labels, {
      "pod-security.kubernetes.io/enforce" = var.pod_security_enforce
      "pod-security.kubernetes.io/warn"    = "restricted"
    })
    annotations = merge(var.namespace_annotations, local.annotations, {
      "ghapp/head-ref" = var.head_ref
    })
  }

  # Pods are created only once the namespace's default service account exists.
  wait_for_default_service_account = true

  # Deleting the namespace deletes everything in it; destroy waits until it is gone.
  timeouts {
    delete = var.namespace_delete_timeout
  }
}

resource "kubernetes_resource_quota_v1" "preview" {
  count = length(var.resource_quota) > 0 ? 1 : 0

  metadata {
    name      = "preview"
    namespace = kubernetes_namespace_v1.preview.metadata[0].name
    labels    = local.labels
  }

  spec {
    hard = var.resource_quota
  }
}

resource "kubernetes_network_policy_v1" "preview" {
  count = var.network_policy_enabled ? 1 : 0

  metadata {
    name      = "preview-ingress"
    namespace = kubernetes_namespace_v1.preview.metadata[0].name
    labels    = local.labels
  }

  spec {
    # Every pod of the namespace: traffic only from the proxy (Gateway or ingress controller) and from the namespace itself.
    pod_selector {}
    policy_types = ["Ingress"]

    ingress {
      from {
        namespace_selector {
          match_labels = {
            "kubernetes.io/metadata.name" = var.proxy_namespace
          }
        }
      }
      from {
        pod_selector {}
      }
    }
  }
}

resource "kubernetes_deployment_v1" "preview" {
  metadata {
    name        = var.app_name
    namespace   = kubernetes_namespace_v1.preview.metadata[0].name
    labels      = local.pod_labels
    annotations = merge(local.annotations, { "ghapp/git-sha" = var.git_sha })
  }

  # The quota and the network policy are in force before the first pod starts.
  depends_on = [kubernetes_resource_quota_v1.preview, kubernetes_network_policy_v1.preview]

  wait_for_rollout = var.wait_for_rollout

  timeouts {
    create = var.rollout_timeout
    update = var.rollout_timeout
    delete = var.namespace_delete_timeout
  }

  lifecycle {
    precondition {
      condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", local.tag))
      error_message = "The image tag made from tag_template (\"${local.tag}\") is not a valid image tag: fix tag_template or image_tag."
    }
    precondition {
      condition     = length(local.host) <= 253
      error_message = "The host ${local.host} is longer than 253 characters: use a shorter preview_domain."
    }
    precondition {
      condition     = (var.tls_default_certificate ? 1 : 0) + (var.tls_secret_name != "" ? 1 : 0) + (var.cert_manager_cluster_issuer != "" ? 1 : 0) <= 1
      error_message = "Choose at most one of tls_default_certificate, tls_secret_name and cert_manager_cluster_issuer."
    }
  }

  spec {
    replicas                  = var.sleeping ? 0 : var.replicas
    revision_history_limit    = 2
    progress_deadline_seconds = local.rollout_timeout_seconds

    selector {
      match_labels = local.selector
    }

    strategy {
      type = "RollingUpdate"
      rolling_update {
        max_surge       = "1"
        max_unavailable = "0"
      }
    }

    template {
      metadata {
        labels      = local.pod_labels
        annotations = { "ghapp/git-sha" = var.git_sha }
      }

      spec {
        # The preview runs the pull request's code: it gets no Kubernetes API credentials.
        automount_service_account_token = false
        enable_service_links            = false

        security_context {
          run_as_non_root = true
          run_as_user     = var.run_as_user
          run_as_group    = var.run_as_group
          fs_group        = var.run_as_group
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        dynamic "image_pull_secrets" {
          for_each = var.image_pull_secret_name != "" ? [var.image_pull_secret_name] : []
          content {
            name = image_pull_secrets.value
          }
        }

        container {
          name              = var.app_name
          image             = local.image
          image_pull_policy = var.image_pull_policy
          command           = length(var.container_command) > 0 ? var.container_command : null
          args              = length(var.container_args) > 0 ? var.container_args : null

          port {
            name           = "http"
            container_port = var.container_port
            protocol       = "TCP"
          }

          dynamic "env" {
            for_each = local.env
            content {
              name  = env.key
              value = env.value
            }
          }

          dynamic "env_from" {
            for_each = var.env_from_secret_name != "" ? [var.env_from_secret_name] : []
            content {
              secret_ref {
                name = env_from.value
              }
            }
          }

          resources {
            requests = {
              cpu    = var.cpu_request
              memory = var.memory_request
            }
            limits = {
              cpu    = var.cpu_limit
              memory = var.memory_limit
            }
          }

          startup_probe {
            http_get {
              path = var.readiness_probe_path
              port = local.probe_port
            }
            period_seconds    = 5
            timeout_seconds   = 3
            failure_threshold = ceil(var.startup_timeout_seconds / 5)
          }

          readiness_probe {
            http_get {
              path = var.readiness_probe_path
              port = local.probe_port
            }
            period_seconds    = var.probe_period_seconds
            timeout_seconds   = 3
            failure_threshold = var.probe_failure_threshold
          }

          liveness_probe {
            http_get {
              path = var.liveness_probe_path
              port = local.probe_port
            }
            period_seconds    = var.probe_period_seconds
            timeout_seconds   = 3
            failure_threshold = var.probe_failure_threshold
          }

          security_context {
            run_as_non_root            = true
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = var.read_only_root_filesystem
            capabilities {
              drop = ["ALL"]
            }
            seccomp_profile {
              type = "RuntimeDefault"
            }
          }

          dynamic "volume_mount" {
            for_each = local.writable_volumes
            content {
              name       = volume_mount.key
              mount_path = volume_mount.value
            }
          }
        }

        dynamic "volume" {
          for_each = local.writable_volumes
          content {
            name = volume.key
            empty_dir {
              size_limit = var.writable_path_size_limit
            }
          }
        }
      }
    }
  }
}

resource "kubernetes_service_v1" "preview" {
  metadata {
    name      = var.app_name
    namespace = kubernetes_namespace_v1.preview.metadata[0].name
    labels    = local.pod_labels
  }

  spec {
    type     = "ClusterIP"
    selector = local.selector

    port {
      name        = "http"
      port        = 80
      target_port = "http"
      protocol    = "TCP"
    }
  }
}
