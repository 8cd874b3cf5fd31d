# The demo's stand-in for a reviewed environment (see feature-env/main.tf for
# why it only uses terraform_data): machines/reviewed-env.yml plans it, waits
# for an approval, and applies exactly the approved plan. release comes from
# the stack's metadata.
terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "release" {
  type    = string
  default = "1.0.0"
}

resource "terraform_data" "app" {
  input = "${var.stack_id} at ${var.release}"
}

# Changing the release replaces the deployment.
resource "terraform_data" "deployment" {
  triggers_replace = var.release
}

output "app" {
  value = terraform_data.app.output
}
