# Milestones 5 (kickstart) and 10 (green image) of the Azure RHEL 8 sample pipeline.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_type, image_name, source_image, azure_subscription_id,
# azure_resource_group, azure_location, azure_vm_size, and packer_manifest: where the manifest
# post-processor writes, read back by the operator). The login comes from Packer's environment
# (ARM_*, set by the target for the identity its own Azure clients use: a service principal's secret
# or certificate, a client JWT, or the managed identity), never from the command line.
#
# 5 starts from target.source_image (a marketplace URN Publisher:Offer:Sku:Version, a managed image
# id of the build's subscription or a gallery image version id: every source takes all three) and
# applies updates at first boot; 10 starts from 5's managed image and adds the default user, SSH
# key login, sudo and networking defaults. Both configure the VM through cloud-init custom data,
# so Packer only waits for SSH before capturing a managed image. Everything after 10 is Ansible
# on the build host.

packer {
  required_plugins {
    azure = {
      source  = "github.com/hashicorp/azure"
      version = ">= 1.4.5, < 2.0.0"
    }
  }
}

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
variable "azure_cloud_environment" {
  type        = string
  default     = "Public"
  description = "the cloud of the connection's Resource Manager: Public, China or USGovernment"
}
variable "azure_vm_size" {
  type    = string
  default = "Standard_D2s_v5"
}
variable "packer_manifest" {
  type    = string
  default = "manifest.json"
}
# The login (clouds/azure_login.py): Packer's environment, set by the target for the identity the
# provider's own Azure clients use; azure_login says which of azure-arm's logins that is
# (client_secret, client_certificate, client_jwt, managed_identity), or azure_cli when a spec's vars
# ask for the `az login` session.
variable "azure_login" {
  type    = string
  default = env("ARM_PACKER_LOGIN")
}
variable "login_subscription_id" {
  type        = string
  default     = env("ARM_SUBSCRIPTION_ID")
  description = "empty for a managed identity on Packer 1.6.6, which then builds in the VM's own subscription"
}
variable "client_id" {
  type    = string
  default = env("ARM_CLIENT_ID")
}
variable "client_secret" {
  type      = string
  default   = env("ARM_CLIENT_SECRET")
  sensitive = true
}
variable "client_cert_path" {
  type    = string
  default = env("ARM_CLIENT_CERT_PATH")
}
variable "client_jwt" {
  type      = string
  default   = env("ARM_CLIENT_JWT")
  sensitive = true
}
variable "tenant_id" {
  type    = string
  default = env("ARM_TENANT_ID")
}
variable "virtual_network" {
  type        = string
  default     = ""
  description = "VNET/SUBNET for the Packer VM (target.network; empty: Packer makes a temporary network and public IP)"
}
variable "virtual_network_resource_group" {
  type        = string
  default     = ""
  description = "the resource group of virtual_network (empty: azure_resource_group)"
}
variable "ssh_username" {
  type    = string
  default = "azureuser"
}

locals {
  # source_image is one of the three forms the spec accepts (spec/azure.py): a marketplace URN
  # (Publisher:Offer:Sku:Version), a managed image id (.../providers/Microsoft.Compute/images/NAME,
  # of the build's subscription) or a gallery image version id (.../galleries/G/images/I/versions/V).
  # Each source sets the fields of its form and leaves the others empty: azure-arm takes exactly one.
  # The lists are padded so that indexing never fails for a form that is not the one given (HCL
  # evaluates both branches of a conditional).
  source_path  = concat(split("/", var.source_image), ["", "", "", "", "", "", "", "", "", "", "", "", ""])
  source_urn   = concat(split(":", var.source_image), ["", "", "", ""])
  source_kind  = lower(local.source_path[6]) == "microsoft.compute" ? lower(local.source_path[7]) : "urn"
  urn          = local.source_kind == "urn" ? slice(local.source_urn, 0, 4) : ["", "", "", ""]
  custom_image = local.source_kind == "images" ? { name = local.source_path[8], group = local.source_path[4] } : { name = "", group = "" }
  gallery = local.source_kind == "galleries" ? [{
    subscription   = local.source_path[2]
    resource_group = local.source_path[4]
    gallery_name   = local.source_path[8]
    image_name     = local.source_path[10]
    image_version  = local.source_path[12]
  }] : []
  # The build's own subnet (target.network): Packer's VM gets a private address there and no public
  # IP, which policies that refuse public IPs require; the worker must reach that subnet.
  network_parts = concat(split("/", var.virtual_network), ["", ""])
  network = {
    name   = var.virtual_network == "" ? "" : local.network_parts[0]
    subnet = var.virtual_network == "" ? "" : local.network_parts[1]
    group  = var.virtual_network == "" ? "" : (var.virtual_network_resource_group == "" ? var.azure_resource_group : var.virtual_network_resource_group)
  }
  # azure-arm's login fields; the Azure CLI login takes none of them (Packer 1.6.6 would read a
  # subscription without credentials as an interactive device login).
  cli = var.azure_login == "azure_cli"
  login = {
    subscription_id    = local.cli ? "" : var.login_subscription_id
    client_id          = local.cli ? "" : var.client_id
    client_cert_path   = local.cli ? "" : var.client_cert_path
    tenant_id          = local.cli ? "" : var.tenant_id
    use_azure_cli_auth = local.cli
  }
  tags = {
    BuildId   = var.build_id
    Pipeline  = var.pipeline
    Milestone = var.milestone
    ImageType = var.image_type
    ManagedBy = "airflow-provider-imagebuild"
  }
}

source "azure-arm" "kickstart" {
  subscription_id                          = local.login.subscription_id
  client_id                                = local.login.client_id
  client_secret                            = local.cli ? "" : var.client_secret
  client_cert_path                         = local.login.client_cert_path
  client_jwt                               = local.cli ? "" : var.client_jwt
  tenant_id                                = local.login.tenant_id
  use_azure_cli_auth                       = local.login.use_azure_cli_auth
  cloud_environment_name                   = var.azure_cloud_environment
  location                                 = var.azure_location
  vm_size                                  = var.azure_vm_size
  os_type                                  = "Linux"
  image_publisher                          = local.urn[0]
  image_offer                              = local.urn[1]
  image_sku                                = local.urn[2]
  image_version                            = local.urn[3]
  custom_managed_image_name                = local.custom_image.name
  custom_managed_image_resource_group_name = local.custom_image.group
  dynamic "shared_image_gallery" {
    for_each = local.gallery
    content {
      subscription   = shared_image_gallery.value.subscription
      resource_group = shared_image_gallery.value.resource_group
      gallery_name   = shared_image_gallery.value.gallery_name
      image_name     = shared_image_gallery.value.image_name
      image_version  = shared_image_gallery.value.image_version
    }
  }
  managed_image_name                  = var.image_name
  managed_image_resource_group_name   = var.azure_resource_group
  virtual_network_name                = local.network.name
  virtual_network_subnet_name         = local.network.subnet
  virtual_network_resource_group_name = local.network.group
  communicator                        = "ssh"
  ssh_username                        = var.ssh_username
  custom_data_file                    = "${path.root}/kickstart.cloud-config"
  azure_tags                          = local.tags
}

source "azure-arm" "green" {
  subscription_id                          = local.login.subscription_id
  client_id                                = local.login.client_id
  client_secret                            = local.cli ? "" : var.client_secret
  client_cert_path                         = local.login.client_cert_path
  client_jwt                               = local.cli ? "" : var.client_jwt
  tenant_id                                = local.login.tenant_id
  use_azure_cli_auth                       = local.login.use_azure_cli_auth
  cloud_environment_name                   = var.azure_cloud_environment
  location                                 = var.azure_location
  vm_size                                  = var.azure_vm_size
  os_type                                  = "Linux"
  image_publisher                          = local.urn[0]
  image_offer                              = local.urn[1]
  image_sku                                = local.urn[2]
  image_version                            = local.urn[3]
  custom_managed_image_name                = local.custom_image.name
  custom_managed_image_resource_group_name = local.custom_image.group
  dynamic "shared_image_gallery" {
    for_each = local.gallery
    content {
      subscription   = shared_image_gallery.value.subscription
      resource_group = shared_image_gallery.value.resource_group
      gallery_name   = shared_image_gallery.value.gallery_name
      image_name     = shared_image_gallery.value.image_name
      image_version  = shared_image_gallery.value.image_version
    }
  }
  managed_image_name                  = var.image_name
  managed_image_resource_group_name   = var.azure_resource_group
  virtual_network_name                = local.network.name
  virtual_network_subnet_name         = local.network.subnet
  virtual_network_resource_group_name = local.network.group
  communicator                        = "ssh"
  ssh_username                        = var.ssh_username
  custom_data_file                    = "${path.root}/green.cloud-config"
  azure_tags                          = local.tags
}

build {
  sources = ["source.azure-arm.kickstart", "source.azure-arm.green"]

  # azure-arm generalizes the VM once the provisioners are done; the Linux agent must deprovision it
  # first (the image would keep Packer's user, the host keys and the agent's provisioned state, and
  # VMs made from it may not provision). The user is gone afterwards, so the script is not cleaned.
  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"
    inline          = ["/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync"]
    inline_shebang  = "/bin/sh -x"
    skip_clean      = true
  }

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
