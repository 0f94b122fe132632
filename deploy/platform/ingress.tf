# ingress-nginx behind an AWS Network Load Balancer: one load balancer for every preview and for ghapp itself;
# each preview is a host rule on it (terraform/kubernetes creates the Ingress, wildcard DNS brings the traffic).
#
# Note: the Kubernetes project retired ingress-nginx (best-effort maintenance ended in March 2026). It keeps
# working, but plan a move to a maintained controller; terraform/kubernetes only needs an Ingress controller
# (its ingress_class_name) and deploy/kubernetes's ingress.yaml one nginx-specific annotation (body size).

resource "helm_release" "ingress_nginx" {
  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.ingress_nginx_chart_version
  namespace        = "ingress-nginx"
  create_namespace = true
  wait             = true
  timeout          = 900

  values = [yamlencode({
    controller = {
      replicaCount = var.ingress_nginx_replicas
      minAvailable = 1
      ingressClassResource = {
        name    = "nginx"
        enabled = true
        default = false
      }
      ingressClass = "nginx"
      # Snippet annotations let whoever writes an Ingress inject nginx configuration: keep them off.
      allowSnippetAnnotations = false
      extraArgs = var.default_certificate_secret_name != "" ? {
        "default-ssl-certificate" = var.default_certificate_secret_name
      } : {}
      service = {
        type = "LoadBalancer"
        annotations = {
          "service.beta.kubernetes.io/aws-load-balancer-type"                              = "nlb"
          "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled" = "true"
        }
      }
      resources = {
        requests = { cpu = "100m", memory = "128Mi" }
        limits   = { memory = "512Mi" }
      }
      topologySpreadConstraints = [{
        maxSkew           = 1
        topologyKey       = "kubernetes.io/hostname"
        whenUnsatisfiable = "ScheduleAnyway"
        labelSelector = {
          matchLabels = {
            "app.kubernetes.io/name"      = "ingress-nginx"
            "app.kubernetes.io/component" = "controller"
          }
        }
      }]
    }
  })]

  depends_on = [aws_eks_node_group.default, aws_eks_addon.vpc_cni]
}

# The controller's Service, read after the release is ready (helm waits for the load balancer's address).
data "kubernetes_service_v1" "ingress_nginx" {
  metadata {
    name      = "ingress-nginx-controller"
    namespace = helm_release.ingress_nginx.namespace
  }
}

locals {
  load_balancer_hostname = data.kubernetes_service_v1.ingress_nginx.status[0].load_balancer[0].ingress[0].hostname
}
