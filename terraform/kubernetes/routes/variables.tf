# Set by the parent module (terraform/kubernetes), which validates its own inputs; see its variables.tf.

variable "routing" {
  type        = string
  description = "gateway (HTTPRoutes on the platform's Gateway) or ingress (Ingresses for ingress-nginx)."
}

variable "auth_mode" {
  type        = string
  description = "How ghapp is asked who may pass: external_auth_filter, envoy_security_policy or none."
}

variable "sleeping" {
  type        = bool
  description = "Route the host to ghapp's wake service instead of the preview's Service."
}

variable "namespace" {
  type        = string
  description = "The preview's namespace: every object but the ReferenceGrant lives there."
}

variable "labels" {
  type        = map(string)
  description = "Labels of every object."
}

variable "app_name" {
  type        = string
  description = "Name of the main route (the ghapp route is <app_name>-ghapp)."
}

variable "host" {
  type        = string
  description = "The preview's host name."
}

variable "scheme" {
  type        = string
  description = "http or https, as the preview is reached."
}

variable "service_name" {
  type        = string
  description = "The preview's Service."
}

variable "service_port" {
  type        = number
  description = "Port of the preview's Service."
}

variable "ghapp_namespace" {
  type        = string
  description = "Namespace of ghapp's Services."
}

variable "ghapp_service" {
  type        = object({ name = string, port = number })
  description = "ghapp's main Service, which answers the access check at /gateway/auth."
}

variable "wake_service" {
  type        = object({ name = string, port = number })
  description = "ghapp's gateway Service: wakes a sleeping preview and serves /_ghapp on preview hosts."
}

variable "gateway_parent_refs" {
  type        = list(object({ name = string, namespace = string, section_name = optional(string) }))
  description = "Gateways the HTTPRoutes attach to."
}

variable "auth_request_headers" {
  type        = list(string)
  description = "Request headers passed to ghapp's access check besides Host, Method, Path, Content-Length and Authorization."
}

variable "auth_response_headers" {
  type        = list(string)
  description = "Headers of ghapp's access answer copied into the request to the preview."
}

variable "auth_signin_path" {
  type        = string
  description = "Path on the preview's host where signing in starts (ingress-nginx auth-signin)."
}

variable "ingress_class_name" {
  type        = string
  description = "IngressClass of the Ingresses."
}

variable "ingress_annotations" {
  type        = map(string)
  description = "Extra annotations of the Ingresses."
}

variable "ingress_certificate_annotations" {
  type        = map(string)
  description = "Annotations of the main Ingress that obtain its certificate (cert-manager)."
}

variable "tls_enabled" {
  type        = bool
  description = "The Ingresses list the host under tls."
}

variable "tls_secret_name" {
  type        = string
  description = "TLS Secret of the Ingresses; null: the controller's default certificate."
}
