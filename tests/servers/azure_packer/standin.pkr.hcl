# Stands in for dags/packer/rhel8-azure.pkr.hcl in the tests and the benchmark: Packer's azure-arm
# builder cannot run here (it talks to Azure AD and Resource Manager over https, with no endpoint
# to point elsewhere). Real Packer runs this template with the variables and environment the
# operator gives the shipped one; a shell-local provisioner then makes the managed image on the
# fake Resource Manager with the managed identity's token, and writes the manifest the operator
# reads, as azure-arm's manifest post-processor would.

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_type" {
  type    = string
  default = ""
}
variable "image_name" { type = string }
variable "source_image" { type = string }
variable "azure_subscription_id" { type = string }
variable "azure_resource_group" { type = string }
variable "azure_location" { type = string }
variable "packer_manifest" { type = string }
variable "arm_endpoint" { type = string }

source "null" "kickstart" {
  communicator = "none"
}

source "null" "green" {
  communicator = "none"
}

build {
  sources = ["source.null.kickstart", "source.null.green"]

  provisioner "shell-local" {
    inline = ["python3 ${path.root}/make_image.py"]
    environment_vars = [
      "ARM_ENDPOINT=${var.arm_endpoint}",
      "STANDIN_SUBSCRIPTION=${var.azure_subscription_id}",
      "STANDIN_GROUP=${var.azure_resource_group}",
      "STANDIN_LOCATION=${var.azure_location}",
      "STANDIN_IMAGE=${var.image_name}",
      "STANDIN_SOURCE=${var.source_image}",
      "STANDIN_BUILD_ID=${var.build_id}",
      "STANDIN_PIPELINE=${var.pipeline}",
      "STANDIN_MILESTONE=${var.milestone}",
      "STANDIN_IMAGE_TYPE=${var.image_type}",
      "STANDIN_MANIFEST=${var.packer_manifest}",
    ]
  }
}
