# Milestones 5 (kickstart) and 10 (green image) of an OpenStack pipeline, with Packer's
# openstack builder.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_name, source_image, packer_manifest and the openstack_*
# variables below). The OpenStack login comes from the target's Airflow connection (or clouds.yaml
# cloud) as the OS_* variables the builder reads from its environment (OS_AUTH_URL, OS_USERNAME,
# OS_PASSWORD, OS_PROJECT_NAME, OS_REGION_NAME, OS_CACERT...), never on the command line or in
# this file. The builder does not read OS_INSECURE nor the interface (Packer 1.6.6's
# builder/openstack/access_config.go reads only OS_CLOUD, OS_REGION_NAME, OS_CACERT, OS_CERT and
# OS_KEY besides the login), so those come as variables, with the server's security groups and
# networks.
#
# 5 boots the spec's source image (target.source_image; the target passes its id) and snapshots it
# into an image named by the build; 10 does the same from 5's image. Guest configuration goes
# through cloud-init (user_data); with the default communicator Packer waits for SSH before the
# snapshot, `communicator = "none"` snapshots at once. Everything after 10 is Ansible.
#
# The image carries the build's ownership marks from the start (imagebuild_key: the first 20 hex
# digits of the SHA-256 of "<pipeline>/<build_id>", as the target computes it; a snapshot would
# otherwise inherit the marks of the image it was booted from), so that a retried milestone finds
# and adopts the image an earlier attempt made instead of making a second one of the same name.

packer {
  required_plugins {
    openstack = {
      source  = "github.com/hashicorp/openstack"
      version = ">= 1.1.2, < 2.0.0"
    }
  }
}

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_name" { type = string }
variable "source_image" { type = string }
variable "packer_manifest" {
  type    = string
  default = "manifest.json"
}
variable "openstack_flavor" { type = string }
variable "openstack_networks" {
  type        = string
  default     = "[]"
  description = "network ids as a JSON list (the target passes target.network's id)"
}
variable "openstack_security_groups" {
  type        = string
  default     = "[]"
  description = "security group names as a JSON list (target.security_groups); none: Nova's default group"
}
variable "openstack_region" {
  type    = string
  default = ""
}
variable "openstack_insecure" {
  type        = bool
  default     = false
  description = "skip TLS verification (the connection's extra.insecure, or verify: false of the clouds.yaml cloud)"
}
variable "openstack_endpoint_type" {
  type        = string
  default     = "public"
  description = "the catalog interface: public, internal or admin (the connection's extra.interface)"
}
variable "communicator" {
  type        = string
  default     = "ssh"
  description = "ssh waits until the server answers; none (tests against the loopback fake) snapshots at once"
}
variable "ssh_username" {
  type    = string
  default = "cloud-user"
}

locals {
  marks = {
    imagebuild_key        = substr(sha256("${var.pipeline}/${var.build_id}"), 0, 20)
    imagebuild_managed_by = "airflow-provider-imagebuild"
    imagebuild_build      = var.build_id
    imagebuild_pipeline   = var.pipeline
    imagebuild_milestone  = var.milestone
  }
  metadata        = merge(local.marks, { imagebuild_role = "packer" })
  server_metadata = merge(local.marks, { imagebuild_role = "packer-server" })
  networks        = jsondecode(var.openstack_networks)
  security_groups = jsondecode(var.openstack_security_groups)
}

source "openstack" "kickstart" {
  region            = var.openstack_region
  insecure          = var.openstack_insecure
  endpoint_type     = var.openstack_endpoint_type
  source_image      = var.source_image
  flavor            = var.openstack_flavor
  networks          = local.networks
  security_groups   = local.security_groups
  instance_name     = "${var.image_name}-packer"
  instance_metadata = local.server_metadata
  image_name        = var.image_name
  image_visibility  = "private"
  communicator      = var.communicator
  ssh_username      = var.ssh_username
  user_data_file    = "${path.root}/kickstart.cloud-config"
  metadata          = local.metadata
}

source "openstack" "green" {
  region            = var.openstack_region
  insecure          = var.openstack_insecure
  endpoint_type     = var.openstack_endpoint_type
  source_image      = var.source_image
  flavor            = var.openstack_flavor
  networks          = local.networks
  security_groups   = local.security_groups
  instance_name     = "${var.image_name}-packer"
  instance_metadata = local.server_metadata
  image_name        = var.image_name
  image_visibility  = "private"
  communicator      = var.communicator
  ssh_username      = var.ssh_username
  user_data_file    = "${path.root}/green.cloud-config"
  metadata          = local.metadata
}

build {
  sources = ["source.openstack.kickstart", "source.openstack.green"]

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
