terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "sleep_seconds" {
  type    = string
  default = "60"
}

resource "terraform_data" "slow" {
  input = var.stack_id

  # No shell: local-exec runs the interpreter with the command as its last argument.
  provisioner "local-exec" {
    interpreter = ["sleep"]
    command     = var.sleep_seconds
  }
}

output "slept" {
  value = terraform_data.slow.output
}
