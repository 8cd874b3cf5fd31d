terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "variable_name" {
  type = string
}

resource "terraform_data" "print" {
  input = var.stack_id

  # Prints the variable's value into Terraform's output, and so into the task log.
  provisioner "local-exec" {
    interpreter = ["printenv"]
    command     = var.variable_name
  }
}
