# Milestones 5 (kickstart) and 10 (green image) of a vSphere pipeline, with Packer's
# vsphere-clone builder.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_name, source_image, vsphere_datacenter, vsphere_cluster,
# vsphere_host, vsphere_datastore, vsphere_folder, vsphere_network, vsphere_template and
# packer_manifest). The vCenter login comes from the target's Airflow connection as PKR_VAR_
# variables in Packer's environment (vsphere_server, vsphere_user, vsphere_password,
# vsphere_insecure), never on the command line.
#
# 5 clones the source template (target.template) into a template named by the build; 10 clones
# 5's template, with its network card on vsphere_network (the template's own network when it is
# empty). Everything after 10 is Ansible. vsphere_host is the host the target chose where the
# cluster has no DRS (vCenter refuses a clone there without one); Packer before 1.7 does not send
# it, and the target refuses such a cluster for it.
#
# The guest is never booted here: `communicator = "none"`, so Packer clones, writes the marks and
# converts the clone into a template. Milestones 5 and 10 prove that the clone and conversion work,
# not that the image boots, gets an address or takes SSH: the first boot is milestone 15's build
# host (the target waits up to 10 minutes for VMware Tools to report its address, then Ansible
# connects). A source template that does not boot fails there, not here. Boot checks are #28.
#
# configuration_parameters mark the clone as the build's (imagebuild.build, imagebuild.pipeline,
# imagebuild.managed_by in its advanced settings): a retry of the milestone after Packer made the
# template adopts it by those marks and the target's folder instead of running into "use -force".
# The target adds the build's key when it claims the template.

packer {
  required_plugins {
    vsphere = {
      source  = "github.com/hashicorp/vsphere"
      version = ">= 1.4.2, < 2.0.0"
    }
  }
}

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_name" { type = string }
variable "source_image" {
  type    = string
  default = ""
}
variable "packer_manifest" {
  type    = string
  default = "manifest.json"
}
variable "vsphere_server" { type = string }
variable "vsphere_user" { type = string }
variable "vsphere_password" {
  type      = string
  sensitive = true
}
variable "vsphere_insecure" {
  type    = bool
  default = false
}
variable "vsphere_datacenter" { type = string }
variable "vsphere_cluster" {
  type    = string
  default = ""
}
variable "vsphere_host" {
  type    = string
  default = ""
}
variable "vsphere_datastore" { type = string }
variable "vsphere_folder" {
  type    = string
  default = ""
}
variable "vsphere_network" {
  type    = string
  default = ""
}
variable "vsphere_template" {
  type    = string
  default = ""
}

locals {
  # 5 starts from the spec's source template; 10 from 5's template.
  source = var.source_image != "" ? var.source_image : var.vsphere_template
  notes  = "${var.pipeline} build ${var.build_id} milestone ${var.milestone} (airflow-provider-imagebuild)"
  marks = {
    "imagebuild.build"      = var.build_id
    "imagebuild.pipeline"   = var.pipeline
    "imagebuild.milestone"  = var.milestone
    "imagebuild.managed_by" = "airflow-provider-imagebuild"
    "imagebuild.role"       = "packer"
  }
}

source "vsphere-clone" "kickstart" {
  vcenter_server      = var.vsphere_server
  username            = var.vsphere_user
  password            = var.vsphere_password
  insecure_connection = var.vsphere_insecure
  datacenter          = var.vsphere_datacenter
  cluster             = var.vsphere_cluster
  host                = var.vsphere_host
  datastore           = var.vsphere_datastore
  folder              = var.vsphere_folder
  template            = local.source
  vm_name             = var.image_name
  notes               = local.notes
  network             = var.vsphere_network
  convert_to_template = true
  communicator        = "none"

  configuration_parameters = local.marks
}

source "vsphere-clone" "green" {
  vcenter_server      = var.vsphere_server
  username            = var.vsphere_user
  password            = var.vsphere_password
  insecure_connection = var.vsphere_insecure
  datacenter          = var.vsphere_datacenter
  cluster             = var.vsphere_cluster
  host                = var.vsphere_host
  datastore           = var.vsphere_datastore
  folder              = var.vsphere_folder
  template            = local.source
  vm_name             = var.image_name
  notes               = local.notes
  network             = var.vsphere_network
  convert_to_template = true
  communicator        = "none"

  configuration_parameters = local.marks
}

build {
  sources = ["source.vsphere-clone.kickstart", "source.vsphere-clone.green"]

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
