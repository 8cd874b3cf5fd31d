variable "name" {
  type = string
}

output "text" {
  value = "stack ${var.name}"
}
