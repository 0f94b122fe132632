output "preview_url" {
  description = "Where the preview answers."
  value       = "http://127.0.0.1:${local.port}/"
  depends_on  = [terraform_data.process]
}

output "port" {
  description = "TCP port on 127.0.0.1."
  value       = local.port
}

output "log_file" {
  description = "The preview's log (stdout and stderr of the server)."
  value       = local.log_file
}
