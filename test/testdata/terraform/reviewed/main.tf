terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "greeting" {
  type    = string
  default = "hello"
}

# Changing it replaces terraform_data.pinned.
variable "release" {
  type    = string
  default = "v1"
}

# How many terraform_data.extra there are.
variable "extras" {
  type    = number
  default = 1
}

variable "token" {
  type      = string
  default   = "plan-secret-value-0123456789"
  sensitive = true
}

resource "terraform_data" "app" {
  input = "${var.greeting}, stack ${var.stack_id}"
}

resource "terraform_data" "pinned" {
  triggers_replace = var.release
  input            = var.token
}

resource "terraform_data" "extra" {
  count = var.extras
  input = count.index
}

output "app" {
  value = terraform_data.app.output
}
