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

module "label" {
  source = "./modules/label"
  name   = var.stack_id
}

resource "terraform_data" "app" {
  input = "${var.greeting}, ${module.label.text}"
}

output "app" {
  value = terraform_data.app.output
}

output "zones" {
  value = ["a", "b"]
}

output "settings" {
  value = { size = 2, public = true }
}

output "admin_password" {
  value     = "not-for-metadata"
  sensitive = true
}
