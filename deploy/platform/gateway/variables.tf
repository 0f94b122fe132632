variable "name" {
  type        = string
  default     = "previews"
  description = "Name of the Gateway (terraform/kubernetes's gateway_parent_refs and deploy/kubernetes's HTTPRoutes name it)."
}

variable "namespace" {
  type        = string
  default     = "nginx-gateway"
  description = "Namespace of the Gateway; its certificate Secrets live there too."
}

variable "gateway_class_name" {
  type        = string
  default     = "nginx"
  description = "GatewayClass of the installed controller (NGINX Gateway Fabric: nginx; Envoy Gateway: the class ../gateway.tf creates)."
}

variable "preview_domain" {
  type        = string
  description = "Previews are served at <environment_name>.<preview_domain>."
}

variable "ghapp_namespace" {
  type        = string
  default     = "ghapp"
  description = "ghapp's namespace: the only one whose routes may use ghapp's host."
}

variable "ghapp_host" {
  type        = string
  default     = ""
  description = "ghapp's own host (webhooks). Empty: no listener for it."
}

variable "wildcard_certificate_secret_name" {
  type        = string
  default     = ""
  description = "kubernetes.io/tls Secret in the Gateway's namespace for *.<preview_domain>. Empty: previews over HTTP only."
}

variable "ghapp_certificate_secret_name" {
  type        = string
  default     = ""
  description = "kubernetes.io/tls Secret in the Gateway's namespace for ghapp_host. Empty: no listener for ghapp_host (GitHub needs HTTPS)."
}
