# Contract inputs (set by the app as TF_VAR_*; see DESIGN.md, "Terraform module contract").
# No input here is a secret, and none may become one: variables end up in state. Secrets reach the preview
# through a Kubernetes Secret named in env_from_secret_name.

variable "pr_number" {
  type        = number
  description = "Pull request number (contract input)."

  validation {
    condition     = var.pr_number >= 1 && floor(var.pr_number) == var.pr_number
    error_message = "The pr_number must be a positive whole number."
  }
}

variable "git_sha" {
  type        = string
  description = "Commit to preview, hex, 7 to 40 characters (contract input). The image tag by default."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{7,40}$", var.git_sha))
    error_message = "The git_sha must be 7 to 40 hexadecimal characters."
  }
}

variable "head_ref" {
  type        = string
  description = "Head branch of the pull request (contract input; user text: only stored in an annotation and an environment variable, never run)."

  validation {
    condition     = length(var.head_ref) <= 1024
    error_message = "The head_ref must be at most 1024 characters."
  }
}

variable "repository" {
  type        = string
  description = "Repository as owner/name (contract input). Sanitised into the label ghapp/repository; in full in an annotation."

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.repository))
    error_message = "The repository must look like owner/name."
  }
}

variable "environment_id" {
  type        = number
  description = "Unique, stable integer of the environment (contract input)."

  validation {
    condition     = var.environment_id >= 0 && floor(var.environment_id) == var.environment_id
    error_message = "The environment_id must be a non-negative whole number."
  }
}

variable "environment_name" {
  type        = string
  description = "DNS label naming the environment (contract input): the namespace name and the first label of the host name."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.environment_name))
    error_message = "The environment_name must be a DNS label: lowercase letters, digits and '-', at most 63 characters, no leading or trailing '-'."
  }
}

# Where previews are served.

variable "preview_domain" {
  type        = string
  description = "DNS domain under which each preview gets the host <environment_name>.<preview_domain>; a wildcard record *.<preview_domain> must point at the Gateway (or the ingress controller); deploy/platform creates it."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.preview_domain)) && length(var.preview_domain) <= 189
    error_message = "The preview_domain must be a lowercase DNS name with at least two labels (like preview.example.com), at most 189 characters."
  }
}

variable "routing" {
  type        = string
  default     = "gateway"
  description = "How the host reaches the preview: \"gateway\" (an HTTPRoute attached to the platform's Gateway, Gateway API) or \"ingress\" (an Ingress, for clusters that still run ingress-nginx)."

  validation {
    condition     = contains(["gateway", "ingress"], var.routing)
    error_message = "The routing must be \"gateway\" or \"ingress\"."
  }
}

variable "auth_mode" {
  type        = string
  default     = "external_auth_filter"
  description = "How the proxy asks ghapp who may see the preview (ghapp answers from the repository's access setting): \"external_auth_filter\" (the HTTPRoute ExternalAuth filter of Gateway API 1.4+, experimental channel; with routing = \"ingress\", ingress-nginx's auth-url and auth-signin), \"envoy_security_policy\" (Envoy Gateway's SecurityPolicy extAuth; gateway routing only) or \"none\" (every request passes: only for previews that are public anyway)."

  validation {
    condition     = contains(["external_auth_filter", "envoy_security_policy", "none"], var.auth_mode)
    error_message = "The auth_mode must be \"external_auth_filter\", \"envoy_security_policy\" or \"none\"."
  }
}

variable "gateway_parent_refs" {
  type        = list(object({ name = string, namespace = string, section_name = optional(string) }))
  default     = [{ name = "previews", namespace = "nginx-gateway" }]
  description = "Gateways (and optionally one listener each, section_name) that the preview's HTTPRoutes attach to. The default is the Gateway that deploy/platform creates."

  validation {
    condition = length(var.gateway_parent_refs) >= 1 && length(var.gateway_parent_refs) <= 32 && alltrue([
      for p in var.gateway_parent_refs : can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", p.name))
      && can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", p.namespace))
      && (p.section_name == null || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", coalesce(p.section_name, "-"))))
    ])
    error_message = "The gateway_parent_refs must list 1 to 32 Gateways as {name, namespace, section_name (optional)}, each a DNS name."
  }
}

variable "ghapp_namespace" {
  type        = string
  default     = "ghapp"
  description = "Namespace of ghapp's Services (deploy/kubernetes). A ReferenceGrant there lets the preview's routes reach ghapp_service and wake_service, and nothing else."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.ghapp_namespace))
    error_message = "The ghapp_namespace must be a DNS label."
  }
}

variable "ghapp_service" {
  type        = object({ name = string, port = number })
  default     = { name = "ghapp", port = 80 }
  description = "ghapp's main Service and port: the proxy asks it for each request whether it may pass (GET /gateway/auth...)."

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.ghapp_service.name)) && var.ghapp_service.port >= 1 && var.ghapp_service.port <= 65535
    error_message = "The ghapp_service must be {name = <Service name>, port = <1-65535>}."
  }
}

variable "wake_service" {
  type        = object({ name = string, port = number })
  default     = { name = "ghapp-gateway", port = 8081 }
  description = "ghapp's gateway Service and port (GHAPP_GATEWAY_PORT): a sleeping preview's host is routed there and ghapp wakes it; it also serves ghapp's pages under /_ghapp on every preview host (sign-in)."

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.wake_service.name)) && var.wake_service.port >= 1 && var.wake_service.port <= 65535
    error_message = "The wake_service must be {name = <Service name>, port = <1-65535>}."
  }
}

variable "auth_request_headers" {
  type        = list(string)
  default     = ["Cookie", "Origin"]
  description = "Headers of the visitor's request that the proxy passes to ghapp's access check, besides Host, Method, Path, Content-Length and Authorization (always passed). Origin: a request from another preview's page is not signed in."

  validation {
    condition     = length(var.auth_request_headers) <= 16 && alltrue([for h in var.auth_request_headers : can(regex("^[A-Za-z0-9-]{1,64}$", h))])
    error_message = "The auth_request_headers must be at most 16 header names."
  }
}

variable "auth_response_headers" {
  type        = list(string)
  default     = ["X-Ghapp-User"]
  description = "Headers of ghapp's allowing answer copied into the request to the preview. At least one: Gateway API copies every header of the answer when the list is empty."

  validation {
    condition     = length(var.auth_response_headers) >= 1 && length(var.auth_response_headers) <= 16 && alltrue([for h in var.auth_response_headers : can(regex("^[A-Za-z0-9-]{1,64}$", h))])
    error_message = "The auth_response_headers must be 1 to 16 header names."
  }
}

variable "auth_signin_path" {
  type        = string
  default     = "/_ghapp/signin"
  description = "With routing = \"ingress\": where ingress-nginx sends a visitor ghapp refused (auth-signin), on the preview's own host; ghapp's gateway serves /_ghapp there."

  validation {
    condition     = can(regex("^/_ghapp/[A-Za-z0-9/_.-]*$", var.auth_signin_path))
    error_message = "The auth_signin_path must be a path under /_ghapp/."
  }
}

variable "ingress_class_name" {
  type        = string
  default     = "nginx"
  description = "With routing = \"ingress\": IngressClass of the controller that serves the previews (ingress-nginx installs \"nginx\")."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.ingress_class_name))
    error_message = "The ingress_class_name must be a DNS subdomain name."
  }
}

variable "ingress_annotations" {
  type        = map(string)
  default     = {}
  description = "With routing = \"ingress\": extra annotations of the Ingresses (for example nginx.ingress.kubernetes.io/proxy-body-size). Not for secrets."

  validation {
    condition     = alltrue([for k in keys(var.ingress_annotations) : can(regex("^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$", k))])
    error_message = "Every key of ingress_annotations must be a valid annotation key."
  }
}

variable "tls_default_certificate" {
  type        = bool
  default     = false
  description = "The preview is served over HTTPS with a wildcard certificate for *.<preview_domain> that the proxy already holds: the Gateway's HTTPS listener (deploy/platform's wildcard_certificate_secret_name), or ingress-nginx's --default-ssl-certificate. Nothing is needed in the preview's namespace."
}

variable "tls_secret_name" {
  type        = string
  default     = ""
  description = "With routing = \"ingress\": name (not content) of a kubernetes.io/tls Secret holding a wildcard certificate, referenced by the Ingress. It must exist in the preview's own namespace, so it is copied there by a secret replicator keyed on the namespace's labels or annotations (see namespace_labels). Empty: not used."

  validation {
    condition     = var.tls_secret_name == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.tls_secret_name))
    error_message = "The tls_secret_name must be empty or a DNS subdomain name."
  }
}

variable "cert_manager_cluster_issuer" {
  type        = string
  default     = ""
  description = "With routing = \"ingress\": name of a cert-manager ClusterIssuer: annotates the Ingress with cert-manager.io/cluster-issuer so that cert-manager issues a certificate per preview into the Secret <environment_name>-tls. Empty: not used. Mind the issuer's rate limits (Let's Encrypt: 50 certificates per registered domain per week)."

  validation {
    condition     = var.cert_manager_cluster_issuer == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.cert_manager_cluster_issuer))
    error_message = "The cert_manager_cluster_issuer must be empty or a DNS subdomain name."
  }
}

# What runs.

variable "image_repository" {
  type        = string
  description = "Container image repository without a tag, like ghcr.io/acme/web. The preview runs <image_repository>:<tag>, the image your CI pushed for the PR's commit."

  validation {
    condition     = can(regex("^[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$", var.image_repository))
    error_message = "The image_repository must be a lowercase image name, optionally with a registry host and port, and no tag or digest (like ghcr.io/acme/web)."
  }
}

variable "tag_template" {
  type        = string
  default     = "{git_sha}"
  description = "Image tag, with the placeholders {git_sha} (the full SHA), {short_sha} (its first 7 characters) and {pr_number}; for example \"sha-{short_sha}\" or \"pr-{pr_number}\". Ignored when image_tag is set."

  validation {
    condition     = can(regex("^[A-Za-z0-9_.{}-]{1,128}$", var.tag_template))
    error_message = "The tag_template may only hold tag characters (letters, digits, '_', '.', '-') and placeholders in braces."
  }
}

variable "image_tag" {
  type        = string
  default     = ""
  description = "A fixed image tag for every preview instead of tag_template (for a smoke test of the module). Empty: tag_template decides."

  validation {
    condition     = var.image_tag == "" || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "The image_tag must be empty or a valid image tag."
  }
}

variable "image_pull_policy" {
  type        = string
  default     = "IfNotPresent"
  description = "imagePullPolicy of the container: IfNotPresent suits immutable per-commit tags; Always suits a moving tag."

  validation {
    condition     = contains(["Always", "IfNotPresent", "Never"], var.image_pull_policy)
    error_message = "The image_pull_policy must be Always, IfNotPresent or Never."
  }
}

variable "image_pull_secret_name" {
  type        = string
  default     = ""
  description = "Name (not content) of a kubernetes.io/dockerconfigjson Secret in the preview's namespace for a private registry, copied there like tls_secret_name. Empty: none (the nodes' own registry credentials apply)."

  validation {
    condition     = var.image_pull_secret_name == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.image_pull_secret_name))
    error_message = "The image_pull_secret_name must be empty or a DNS subdomain name."
  }
}

variable "app_name" {
  type        = string
  default     = "preview"
  description = "Name of the Deployment, Service, route (HTTPRoute or Ingress) and container, and the label app.kubernetes.io/name."

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.app_name))
    error_message = "The app_name must be a DNS label of at most 40 characters starting with a letter."
  }
}

variable "container_port" {
  type        = number
  default     = 8080
  description = "Port the application listens on; also given to it as the environment variable PORT."

  validation {
    condition     = var.container_port >= 1 && var.container_port <= 65535 && floor(var.container_port) == var.container_port
    error_message = "The container_port must be a whole number from 1 to 65535."
  }
}

variable "container_command" {
  type        = list(string)
  default     = []
  description = "Overrides the image's ENTRYPOINT. Empty: the image's."

  validation {
    condition     = length(var.container_command) <= 64
    error_message = "The container_command may have at most 64 elements."
  }
}

variable "container_args" {
  type        = list(string)
  default     = []
  description = "Overrides the image's CMD. Empty: the image's."

  validation {
    condition     = length(var.container_args) <= 64
    error_message = "The container_args may have at most 64 elements."
  }
}

variable "replicas" {
  type        = number
  default     = 1
  description = "Pods per preview."

  validation {
    condition     = var.replicas >= 0 && var.replicas <= 10 && floor(var.replicas) == var.replicas
    error_message = "The replicas must be a whole number from 0 to 10."
  }
}

variable "sleeping" {
  type        = bool
  default     = false
  description = "Contract input set by ghapp: the preview sleeps. The Deployment keeps everything but has 0 replicas, and the host is routed to ghapp's wake service, which wakes the preview on the next request."
}

variable "env" {
  type        = map(string)
  default     = {}
  description = "Extra, non-secret environment variables of the container (they are stored in Terraform state). The module also sets PORT, PREVIEW_URL, PREVIEW_REPOSITORY, PREVIEW_PR_NUMBER, PREVIEW_HEAD_REF, PREVIEW_GIT_SHA and PREVIEW_ENVIRONMENT."

  validation {
    condition     = alltrue([for k in keys(var.env) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "Every key of env must be an environment variable name (letters, digits, '_', not starting with a digit)."
  }

  validation {
    condition     = !anytrue([for k in keys(var.env) : can(regex("(?i)(password|passwd|secret|token|private_?key|api_?key|credential)", k))])
    error_message = "The env map looks like it holds a secret, and it would be stored in Terraform state: put secrets into a Kubernetes Secret and name it in env_from_secret_name."
  }
}

variable "env_from_secret_name" {
  type        = string
  default     = ""
  description = "Name (not content) of a Secret in the preview's namespace whose keys all become environment variables (envFrom). The values never pass through Terraform. The namespace is new for every preview, so the Secret is put there by a replicator or an External Secrets operator keyed on the namespace's labels (see namespace_labels); the pod waits until it exists. Empty: none."

  validation {
    condition     = var.env_from_secret_name == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.env_from_secret_name))
    error_message = "The env_from_secret_name must be empty or a DNS subdomain name."
  }
}

# Health checks.

variable "readiness_probe_path" {
  type        = string
  default     = "/"
  description = "HTTP path of the readiness probe (and of the startup probe): a pod receives traffic once it answers 2xx or 3xx."

  validation {
    condition     = can(regex("^/[^\\s]*$", var.readiness_probe_path))
    error_message = "The readiness_probe_path must start with '/' and contain no whitespace."
  }
}

variable "liveness_probe_path" {
  type        = string
  default     = "/"
  description = "HTTP path of the liveness probe: the container restarts after probe_failure_threshold failures in a row."

  validation {
    condition     = can(regex("^/[^\\s]*$", var.liveness_probe_path))
    error_message = "The liveness_probe_path must start with '/' and contain no whitespace."
  }
}

variable "probe_port" {
  type        = number
  default     = 0
  description = "Port the probes connect to. 0: container_port."

  validation {
    condition     = var.probe_port >= 0 && var.probe_port <= 65535 && floor(var.probe_port) == var.probe_port
    error_message = "The probe_port must be a whole number from 0 to 65535."
  }
}

variable "probe_period_seconds" {
  type        = number
  default     = 10
  description = "Seconds between two probes."

  validation {
    condition     = var.probe_period_seconds >= 1 && var.probe_period_seconds <= 300
    error_message = "The probe_period_seconds must be from 1 to 300."
  }
}

variable "probe_failure_threshold" {
  type        = number
  default     = 3
  description = "Failed probes in a row that make a pod unready (readiness) or restart it (liveness)."

  validation {
    condition     = var.probe_failure_threshold >= 1 && var.probe_failure_threshold <= 30
    error_message = "The probe_failure_threshold must be from 1 to 30."
  }
}

variable "startup_timeout_seconds" {
  type        = number
  default     = 120
  description = "How long a new container may take to answer the readiness path before it is restarted; liveness checks start after that."

  validation {
    condition     = var.startup_timeout_seconds >= 5 && var.startup_timeout_seconds <= 3600
    error_message = "The startup_timeout_seconds must be from 5 to 3600."
  }
}

# Resources and limits.

variable "cpu_request" {
  type        = string
  default     = "100m"
  description = "CPU request of the container (Kubernetes quantity)."

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?m?$", var.cpu_request))
    error_message = "The cpu_request must be a CPU quantity like 100m or 0.5."
  }
}

variable "cpu_limit" {
  type        = string
  default     = "1"
  description = "CPU limit of the container (Kubernetes quantity)."

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?m?$", var.cpu_limit))
    error_message = "The cpu_limit must be a CPU quantity like 500m or 1."
  }
}

variable "memory_request" {
  type        = string
  default     = "128Mi"
  description = "Memory request of the container (Kubernetes quantity)."

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$", var.memory_request))
    error_message = "The memory_request must be a memory quantity like 128Mi or 1Gi."
  }
}

variable "memory_limit" {
  type        = string
  default     = "512Mi"
  description = "Memory limit of the container (Kubernetes quantity); the container is killed beyond it."

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$", var.memory_limit))
    error_message = "The memory_limit must be a memory quantity like 512Mi or 1Gi."
  }
}

variable "resource_quota" {
  type = map(string)
  default = {
    "requests.cpu"           = "2"
    "requests.memory"        = "2Gi"
    "limits.cpu"             = "4"
    "limits.memory"          = "4Gi"
    "pods"                   = "10"
    "services"               = "5"
    "services.loadbalancers" = "0"
    "services.nodeports"     = "0"
    "persistentvolumeclaims" = "0"
  }
  description = "Hard limits of the namespace's ResourceQuota (spec.hard): what one preview may use at most, rolling updates included. An empty map creates no quota."

  validation {
    condition     = alltrue([for k, v in var.resource_quota : can(regex("^[a-z0-9./-]+$", k)) && can(regex("^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$", v))])
    error_message = "Every key of resource_quota must be a quota resource name (like limits.memory) and every value a quantity."
  }
}

# Security.

variable "run_as_user" {
  type        = number
  default     = 10001
  description = "UID the container runs as (runAsNonRoot is always set, so it may not be 0). Set it to the image's numeric USER if that matters to the image."

  validation {
    condition     = var.run_as_user >= 1 && var.run_as_user <= 2147483647 && floor(var.run_as_user) == var.run_as_user
    error_message = "The run_as_user must be a whole number from 1 to 2147483647."
  }
}

variable "run_as_group" {
  type        = number
  default     = 10001
  description = "GID the container runs as; also the fsGroup of its volumes."

  validation {
    condition     = var.run_as_group >= 1 && var.run_as_group <= 2147483647 && floor(var.run_as_group) == var.run_as_group
    error_message = "The run_as_group must be a whole number from 1 to 2147483647."
  }
}

variable "read_only_root_filesystem" {
  type        = bool
  default     = true
  description = "Mount the container's root filesystem read-only; writable_paths get an emptyDir each. Set false for an application that writes elsewhere."
}

variable "writable_paths" {
  type        = list(string)
  default     = ["/tmp"]
  description = "Absolute paths that get a writable emptyDir volume (useful with read_only_root_filesystem)."

  validation {
    condition     = length(var.writable_paths) <= 16 && alltrue([for p in var.writable_paths : can(regex("^/[^\\s]*$", p))])
    error_message = "The writable_paths must be at most 16 absolute paths."
  }
}

variable "writable_path_size_limit" {
  type        = string
  default     = "256Mi"
  description = "sizeLimit of each writable_paths emptyDir."

  validation {
    condition     = can(regex("^[0-9]+(k|M|G|Ki|Mi|Gi)$", var.writable_path_size_limit))
    error_message = "The writable_path_size_limit must be a memory quantity like 256Mi."
  }
}

variable "pod_security_enforce" {
  type        = string
  default     = "restricted"
  description = "Pod Security Standard enforced on the namespace (label pod-security.kubernetes.io/enforce). The module's pod meets \"restricted\"."

  validation {
    condition     = contains(["privileged", "baseline", "restricted"], var.pod_security_enforce)
    error_message = "The pod_security_enforce must be privileged, baseline or restricted."
  }
}

variable "network_policy_enabled" {
  type        = bool
  default     = true
  description = "Create a NetworkPolicy that admits traffic to the preview's pods only from proxy_namespace and from the preview's own namespace (needs a CNI that enforces NetworkPolicy)."
}

variable "proxy_namespace" {
  type        = string
  default     = "nginx-gateway"
  description = "Namespace of the proxy pods that carry the previews' traffic (the Gateway's data plane; ingress-nginx's namespace with routing = \"ingress\"), admitted by the NetworkPolicy."

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.proxy_namespace))
    error_message = "The proxy_namespace must be a DNS label."
  }
}

variable "namespace_labels" {
  type        = map(string)
  default     = {}
  description = "Extra labels of the preview's namespace, for example the selector of a secret replicator. The module's own labels win on a clash."

  validation {
    condition     = alltrue([for k, v in var.namespace_labels : can(regex("^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$", k)) && can(regex("^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$", v))])
    error_message = "Every entry of namespace_labels must be a valid label key and value."
  }
}

variable "namespace_annotations" {
  type        = map(string)
  default     = {}
  description = "Extra annotations of the preview's namespace. Not for secrets."

  validation {
    condition     = alltrue([for k in keys(var.namespace_annotations) : can(regex("^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$", k))])
    error_message = "Every key of namespace_annotations must be a valid annotation key."
  }
}

# Terraform behaviour.

variable "wait_for_rollout" {
  type        = bool
  default     = true
  description = "Apply waits until the Deployment's new pods are ready, so that preview_url answers when the app reports it and a broken image fails the run (shown in the check run)."
}

variable "rollout_timeout" {
  type        = string
  default     = "10m"
  description = "How long apply waits for the rollout (also the Deployment's progress deadline); keep it below the app's GHAPP_RUN_TIMEOUT."

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.rollout_timeout))
    error_message = "The rollout_timeout must be a duration like 300s, 10m or 1h."
  }
}

variable "namespace_delete_timeout" {
  type        = string
  default     = "10m"
  description = "How long destroy waits for the namespace (and so everything in it) to be gone."

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.namespace_delete_timeout))
    error_message = "The namespace_delete_timeout must be a duration like 300s, 10m or 1h."
  }
}

variable "kubeconfig_path" {
  type        = string
  default     = ""
  description = "Path of a kubeconfig file for the provider. Empty: KUBE_* environment variables, or the in-cluster service account."

  validation {
    condition     = length(var.kubeconfig_path) <= 4096
    error_message = "The kubeconfig_path must be at most 4096 characters."
  }
}

variable "kubeconfig_context" {
  type        = string
  default     = ""
  description = "Context within the kubeconfig. Empty: its current context."

  validation {
    condition     = length(var.kubeconfig_context) <= 253
    error_message = "The kubeconfig_context must be at most 253 characters."
  }
}
