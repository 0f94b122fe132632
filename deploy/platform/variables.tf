variable "region" {
  type        = string
  default     = "us-east-1"
  description = "AWS region of the cluster."

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "The region must be an AWS region name like us-east-1."
  }
}

variable "cluster_name" {
  type        = string
  default     = "ghapp"
  description = "Name of the EKS cluster that runs ghapp and the previews."

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_-]{0,99}$", var.cluster_name))
    error_message = "The cluster_name must start with a letter and hold at most 100 letters, digits, '-' or '_'."
  }
}

variable "kubernetes_version" {
  type        = string
  default     = "1.33"
  description = "Kubernetes minor version of the cluster (1.30 or newer for the admission policy in deploy/kubernetes/policy)."

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "The kubernetes_version must look like 1.33."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets (in at least two availability zones, with a NAT gateway for egress) of an existing VPC, for the control plane's interfaces and the nodes. Public subnets need the tag kubernetes.io/role/elb=1 for the Gateway's load balancer."

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give at least two subnet ids (subnet-...)."
  }
}

variable "endpoint_public_access" {
  type        = bool
  default     = true
  description = "Whether the Kubernetes API endpoint is reachable from the internet (from public_access_cidrs). ghapp itself reaches it from inside the VPC."
}

variable "public_access_cidrs" {
  type        = list(string)
  default     = ["0.0.0.0/0"]
  description = "CIDR blocks allowed to reach the public API endpoint; narrow it to your offices and CI."

  validation {
    condition     = alltrue([for c in var.public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "Every entry of public_access_cidrs must be a CIDR block."
  }
}

variable "node_instance_types" {
  type        = list(string)
  default     = ["t3.large"]
  description = "EC2 instance types of the managed node group (ghapp, the Gateway and the previews share it)."

  validation {
    condition     = length(var.node_instance_types) >= 1
    error_message = "Give at least one instance type."
  }
}

variable "node_min_size" {
  type        = number
  default     = 2
  description = "Least number of nodes."

  validation {
    condition     = var.node_min_size >= 1
    error_message = "The node_min_size must be at least 1."
  }
}

variable "node_desired_size" {
  type        = number
  default     = 2
  description = "Initial number of nodes (changes made later by an autoscaler are ignored)."

  validation {
    condition     = var.node_desired_size >= 1
    error_message = "The node_desired_size must be at least 1."
  }
}

variable "node_max_size" {
  type        = number
  default     = 6
  description = "Most nodes; size it for ghapp's replicas, the Gateway's proxies and (previews at once) x (each preview's ResourceQuota)."

  validation {
    condition     = var.node_max_size >= 1
    error_message = "The node_max_size must be at least 1."
  }
}

variable "preview_domain" {
  type        = string
  description = "DNS domain of the previews: every preview is served at <environment_name>.<preview_domain> (terraform/kubernetes's preview_domain, the same value). A wildcard record *.<preview_domain> is created in route53_zone_id."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.preview_domain))
    error_message = "The preview_domain must be a lowercase DNS name like preview.example.com."
  }
}

variable "route53_zone_id" {
  type        = string
  description = "Route 53 hosted zone that holds preview_domain (the zone of example.com for preview.example.com, or a zone delegated for preview_domain itself)."

  validation {
    condition     = can(regex("^Z[A-Z0-9]+$", var.route53_zone_id))
    error_message = "The route53_zone_id must be a hosted zone id like Z0123456789ABC."
  }
}

variable "ghapp_host" {
  type        = string
  default     = ""
  description = "Host name of ghapp's own webhook endpoint and dashboard (like ghapp.example.com, in the same zone); gets a record to the Gateway's load balancer. Empty: no record."

  validation {
    condition     = var.ghapp_host == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.ghapp_host))
    error_message = "The ghapp_host must be empty or a lowercase DNS name."
  }
}

variable "dns_ttl" {
  type        = number
  default     = 300
  description = "TTL in seconds of the DNS records."

  validation {
    condition     = var.dns_ttl >= 30 && var.dns_ttl <= 86400
    error_message = "The dns_ttl must be from 30 to 86400."
  }
}

variable "gateway_controller" {
  type        = string
  default     = "nginx-gateway-fabric"
  description = "Gateway API implementation that carries the previews: nginx-gateway-fabric (implements the HTTPRoute ExternalAuth filter; previews use auth_mode = external_auth_filter) or envoy-gateway (previews use auth_mode = envoy_security_policy)."

  validation {
    condition     = contains(["nginx-gateway-fabric", "envoy-gateway"], var.gateway_controller)
    error_message = "The gateway_controller must be nginx-gateway-fabric or envoy-gateway."
  }
}

variable "envoy_gateway_chart_version" {
  type        = string
  default     = "v1.7.5"
  description = "Version of Envoy Gateway's charts: gateway-crds-helm, which installs the Gateway API CRDs (v1.7.5 carries Gateway API v1.4.1, experimental channel) whichever controller runs, and gateway-helm when envoy-gateway is the controller."

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.envoy_gateway_chart_version))
    error_message = "The envoy_gateway_chart_version must be an exact version like v1.7.5."
  }
}

variable "nginx_gateway_fabric_chart_version" {
  type        = string
  default     = "2.6.7"
  description = "Version of the NGINX Gateway Fabric chart (ExternalAuth filter support since 2.6). Pinned; the chart pins its images."

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.nginx_gateway_fabric_chart_version))
    error_message = "The nginx_gateway_fabric_chart_version must be an exact version like 2.6.7."
  }
}

variable "proxy_replicas" {
  type        = number
  default     = 2
  description = "Replicas of the Gateway's proxy (NGINX Gateway Fabric's data plane): it carries every preview's traffic and ghapp's webhooks."

  validation {
    condition     = var.proxy_replicas >= 1 && var.proxy_replicas <= 20
    error_message = "The proxy_replicas must be from 1 to 20."
  }
}

variable "max_request_body_size" {
  type        = string
  default     = "100m"
  description = "With NGINX Gateway Fabric: the largest request body the Gateway accepts (ClientSettingsPolicy body.maxSize, NGINX size syntax); at least 25m for GitHub's deliveries."

  validation {
    condition     = can(regex("^[0-9]+[km]?$", var.max_request_body_size))
    error_message = "The max_request_body_size must be an NGINX size like 100m."
  }
}

variable "wildcard_certificate_secret_name" {
  type        = string
  default     = ""
  description = "Name of an existing kubernetes.io/tls Secret, in the Gateway's namespace (nginx-gateway, or envoy-gateway-system), with a wildcard certificate for *.<preview_domain>: the Gateway gets an HTTPS listener for the previews, which then set tls_default_certificate = true. Empty: previews over HTTP only. The Secret is created out of band (cert-manager with a DNS-01 issuer, or kubectl create secret tls), never through this Terraform."

  validation {
    condition     = var.wildcard_certificate_secret_name == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.wildcard_certificate_secret_name))
    error_message = "The wildcard_certificate_secret_name must be empty or a Secret name."
  }
}

variable "ghapp_certificate_secret_name" {
  type        = string
  default     = ""
  description = "Name of an existing kubernetes.io/tls Secret, in the Gateway's namespace, for ghapp_host: the Gateway gets an HTTPS listener for ghapp's webhooks. Empty: no listener for ghapp_host."

  validation {
    condition     = var.ghapp_certificate_secret_name == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.ghapp_certificate_secret_name))
    error_message = "The ghapp_certificate_secret_name must be empty or a Secret name."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags of every AWS resource created here."

  validation {
    condition     = length(var.tags) <= 40
    error_message = "At most 40 tags."
  }
}
