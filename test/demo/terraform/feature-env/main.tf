# The demo's stand-in for a feature environment's infrastructure. A real one
# would declare a VPC, a load balancer, a database…; providers cannot be
# downloaded here, so this uses only Terraform's built-in terraform_data,
# which keeps its inputs in the state like any resource.
#
# stackseam passes stack_id, every key of the stack's metadata and the
# task's `variables` (machines/feature-env.yml) as variables; the ones not
# declared here are ignored. The state lives in the stackseam bucket, under
# feature-env/<stack id>/feature-env/, so destroy finds what apply made.
terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "instance_count" {
  type    = number
  default = 1
}

variable "public" {
  type    = bool
  default = false
}

resource "terraform_data" "environment" {
  input = {
    name      = "feature-${var.stack_id}"
    instances = var.instance_count
    public    = var.public
  }
}

# Outputs come back as the task's outputs and are merged into the stack's
# metadata, where later tasks and `stackseam show` see them.
output "url" {
  value = "https://${var.stack_id}.dev.example.com"
}

output "instances" {
  value = terraform_data.environment.output.instances
}
