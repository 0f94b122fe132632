output "manifest" {
  description = "The Gateway object."
  value       = local.manifest
}
