# The demo's stand-in for the QA environment (see feature-env/main.tf for
# why it only uses terraform_data). app_count comes from the task's
# `variables` in machines/qa-env.yml; appVersion from the stack's metadata
# (the release pipeline sends it with LAUNCH and UPDATE).
terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "app_count" {
  type    = number
  default = 2
}

variable "appVersion" {
  type    = string
  default = "latest"
}

resource "terraform_data" "app" {
  input = {
    name     = "qa-${var.stack_id}"
    replicas = var.app_count
    version  = var.appVersion
  }
}

output "qa_url" {
  value = "https://${var.stack_id}.qa.example.com"
}
