terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

resource "terraform_data" "app" {
  input = var.stack_id

  lifecycle {
    precondition {
      condition     = length(var.stack_id) > 1000
      error_message = "The broken fixture always fails: upload the fixed script."
    }
  }
}
