# Wildcard DNS: every <environment_name>.<preview_domain> resolves to the Gateway's load balancer, so a new
# preview needs no DNS change at all. A CNAME, because the NLB is known by its host name.

resource "aws_route53_record" "previews" {
  zone_id = var.route53_zone_id
  name    = "*.${var.preview_domain}"
  type    = "CNAME"
  ttl     = var.dns_ttl
  records = [local.load_balancer_hostname]
}

resource "aws_route53_record" "ghapp" {
  count = var.ghapp_host != "" ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.ghapp_host
  type    = "CNAME"
  ttl     = var.dns_ttl
  records = [local.load_balancer_hostname]
}
