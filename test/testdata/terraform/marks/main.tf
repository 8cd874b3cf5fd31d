# Test fixture: a provider-free resource whose create and destroy leave marks outside the work
# dir, so a test can tell what really exists. Creating it touches <marks_dir>/<stack_id> and then
# sleeps (a slow apply: the mark exists before the resource is in the state); destroying it
# removes the mark. No shell: local-exec runs the interpreter with the command as its last argument.
terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "marks_dir" {
  type = string
}

variable "sleep_seconds" {
  type    = string
  default = "0"
}

resource "terraform_data" "marked" {
  input = "${var.marks_dir}/${var.stack_id}"

  provisioner "local-exec" {
    interpreter = ["touch"]
    command     = self.input
  }

  provisioner "local-exec" {
    interpreter = ["sleep"]
    command     = var.sleep_seconds
  }

  # Destroy-time provisioners may refer only to self.
  provisioner "local-exec" {
    when        = destroy
    interpreter = ["rm", "-f"]
    command     = self.input
  }
}

output "mark" {
  value = terraform_data.marked.output
}
