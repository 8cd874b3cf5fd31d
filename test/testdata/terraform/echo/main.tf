terraform {
  backend "s3" {}
}

variable "stack_id" {
  type = string
}

variable "quoted" {
  type = string
}

variable "shell" {
  type = string
}

variable "template" {
  type = string
}

variable "dashes" {
  type = string
}

variable "multi_line" {
  type = string
}

variable "count_of" {
  type = number
}

variable "enabled" {
  type = bool
}

resource "terraform_data" "echo" {
  input = var.shell
}

output "stack_id" {
  value = var.stack_id
}

output "quoted" {
  value = var.quoted
}

output "shell" {
  value = terraform_data.echo.output
}

output "template" {
  value = var.template
}

output "dashes" {
  value = var.dashes
}

output "multi_line" {
  value = var.multi_line
}

output "count_of" {
  value = var.count_of
}

output "enabled" {
  value = var.enabled
}
