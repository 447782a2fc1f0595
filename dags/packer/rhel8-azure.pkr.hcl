# Milestones 5 (kickstart) and 10 (green image) of the Azure RHEL 8 sample pipeline.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_name, source_image, azure_subscription_id,
# azure_resource_group, azure_location, azure_vm_size, and packer_manifest: where the manifest
# post-processor writes, read back by the operator). Credentials come from Packer's environment
# (ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID from a service principal connection; none with a
# managed identity, which azure-arm then uses), never from the command line.
#
# 5 starts from the marketplace image (target.source_image, Publisher:Offer:Sku:Version) and
# applies updates at first boot; 10 starts from 5's managed image and adds the default user, SSH
# key login, sudo and networking defaults. Both configure the VM through cloud-init custom data,
# so Packer only waits for SSH before capturing a managed image. Everything after 10 is Ansible
# on the build host.

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_type" {
  type    = string
  default = "webserver"
}
variable "image_name" { type = string }
variable "source_image" { type = string }
variable "azure_subscription_id" { type = string }
variable "azure_resource_group" { type = string }
variable "azure_location" { type = string }
variable "azure_vm_size" {
  type    = string
  default = "Standard_D2s_v5"
}
variable "packer_manifest" {
  type    = string
  default = "manifest.json"
}
variable "client_id" {
  type    = string
  default = env("ARM_CLIENT_ID")
}
variable "client_secret" {
  type    = string
  default = env("ARM_CLIENT_SECRET")
}
variable "tenant_id" {
  type    = string
  default = env("ARM_TENANT_ID")
}
variable "virtual_network" {
  type        = string
  default     = ""
  description = "VNET/SUBNET in the resource group for the Packer VM (empty: Packer makes a temporary one)"
}
variable "ssh_username" {
  type    = string
  default = "azureuser"
}

locals {
  urn        = split(":", var.source_image)
  image_path = split("/", var.source_image)
  network    = split("/", var.virtual_network)
  tags = {
    BuildId   = var.build_id
    Pipeline  = var.pipeline
    Milestone = var.milestone
    ImageType = var.image_type
    ManagedBy = "airflow-provider-imagebuild"
  }
}

source "azure-arm" "kickstart" {
  subscription_id                     = var.azure_subscription_id
  client_id                           = var.client_id
  client_secret                       = var.client_secret
  tenant_id                           = var.tenant_id
  location                            = var.azure_location
  vm_size                             = var.azure_vm_size
  os_type                             = "Linux"
  image_publisher                     = local.urn[0]
  image_offer                         = length(local.urn) > 1 ? local.urn[1] : ""
  image_sku                           = length(local.urn) > 2 ? local.urn[2] : ""
  image_version                       = length(local.urn) > 3 ? local.urn[3] : "latest"
  managed_image_name                  = var.image_name
  managed_image_resource_group_name   = var.azure_resource_group
  virtual_network_name                = var.virtual_network == "" ? "" : local.network[0]
  virtual_network_subnet_name         = var.virtual_network == "" ? "" : local.network[1]
  virtual_network_resource_group_name = var.virtual_network == "" ? "" : var.azure_resource_group
  communicator                        = "ssh"
  ssh_username                        = var.ssh_username
  custom_data_file                    = "${path.root}/kickstart.cloud-config"
  azure_tags                          = local.tags
}

source "azure-arm" "green" {
  subscription_id                          = var.azure_subscription_id
  client_id                                = var.client_id
  client_secret                            = var.client_secret
  tenant_id                                = var.tenant_id
  location                                 = var.azure_location
  vm_size                                  = var.azure_vm_size
  os_type                                  = "Linux"
  custom_managed_image_name                = length(local.image_path) > 8 ? local.image_path[8] : ""
  custom_managed_image_resource_group_name = length(local.image_path) > 4 ? local.image_path[4] : ""
  managed_image_name                       = var.image_name
  managed_image_resource_group_name        = var.azure_resource_group
  virtual_network_name                     = var.virtual_network == "" ? "" : local.network[0]
  virtual_network_subnet_name              = var.virtual_network == "" ? "" : local.network[1]
  virtual_network_resource_group_name      = var.virtual_network == "" ? "" : var.azure_resource_group
  communicator                             = "ssh"
  ssh_username                             = var.ssh_username
  custom_data_file                         = "${path.root}/green.cloud-config"
  azure_tags                               = local.tags
}

build {
  sources = ["source.azure-arm.kickstart", "source.azure-arm.green"]

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
