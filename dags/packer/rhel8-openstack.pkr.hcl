# Milestones 5 (kickstart) and 10 (green image) of an OpenStack pipeline, with Packer's
# openstack builder.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_name, source_image, openstack_flavor, openstack_network,
# openstack_region and packer_manifest). The OpenStack login comes from the target's Airflow
# connection (or clouds.yaml cloud) as the OS_* variables the builder reads from its environment,
# never on the command line or in this file.
#
# 5 boots the spec's source image (target.source_image; the target passes its id) and snapshots it
# into an image named by the build; 10 does the same from 5's image. Guest configuration goes
# through cloud-init (user_data); with the default communicator Packer waits for SSH before the
# snapshot, `communicator = "none"` snapshots at once. Everything after 10 is Ansible. The target
# gives the image the build's ownership properties once Packer reports it.

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
variable "openstack_network" { type = string }
variable "openstack_region" {
  type    = string
  default = ""
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
  metadata = {
    imagebuild_build     = var.build_id
    imagebuild_pipeline  = var.pipeline
    imagebuild_milestone = var.milestone
    imagebuild_role      = "packer"
  }
}

source "openstack" "kickstart" {
  region           = var.openstack_region
  source_image     = var.source_image
  flavor           = var.openstack_flavor
  networks         = [var.openstack_network]
  image_name       = var.image_name
  image_visibility = "private"
  communicator     = var.communicator
  ssh_username     = var.ssh_username
  user_data_file   = "${path.root}/kickstart.cloud-config"
  metadata         = local.metadata
}

source "openstack" "green" {
  region           = var.openstack_region
  source_image     = var.source_image
  flavor           = var.openstack_flavor
  networks         = [var.openstack_network]
  image_name       = var.image_name
  image_visibility = "private"
  communicator     = var.communicator
  ssh_username     = var.ssh_username
  user_data_file   = "${path.root}/green.cloud-config"
  metadata         = local.metadata
}

build {
  sources = ["source.openstack.kickstart", "source.openstack.green"]

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
