# Milestones 5 (kickstart) and 10 (green image) of the Google Cloud RHEL 8 sample pipeline.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_name, source_image, gcp_project, gcp_zone,
# gcp_machine_type, gcp_network, gcp_subnetwork, source_image_family, source_image_project, and
# packer_manifest: where the manifest post-processor writes, read back by the operator).
# image_name is the build's (the target derives it from the build's digest: RFC 1035, at most
# 56 characters); Packer's instance and its boot disk are named after it with a part of a UUID, so
# that an instance an interrupted attempt left behind never blocks the next one. The image and the
# instance carry the labels in local.labels, which the target checks before it adopts an image of
# that name on a retry (Packer stops when its image exists) or deletes a failed one.
# Credentials: GOOGLE_APPLICATION_CREDENTIALS in Packer's environment (a service account key
# file of the connection), or the worker's own identity (workload identity); never on the
# command line.
#
# 5 starts from target.source_image (an image name) if the spec gives one, else from the newest
# image of target.source_image_family, in target.source_image_project; the target passes only
# what the spec sets, so the defaults below (the RHEL 8 family in rhel-cloud) hold otherwise. It
# applies updates at first boot; 10 starts from 5's image and adds the default user, SSH key
# login, sudo and networking defaults. Both configure the VM through cloud-init user data, so
# Packer only waits for SSH before creating the image. Everything after 10 is Ansible.

packer {
  required_plugins {
    googlecompute = {
      source  = "github.com/hashicorp/googlecompute"
      version = ">= 1.1.9, < 2.0.0"
    }
  }
}

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_name" { type = string }
variable "source_image" { type = string }
variable "gcp_project" { type = string }
variable "gcp_zone" { type = string }
variable "gcp_machine_type" {
  type    = string
  default = "e2-standard-2"
}
variable "gcp_network" {
  type    = string
  default = "default"
}
variable "gcp_subnetwork" {
  type    = string
  default = ""
}
variable "source_image_family" {
  type    = string
  default = "rhel-8"
}
variable "source_image_project" {
  type    = string
  default = "rhel-cloud"
}
variable "packer_manifest" {
  type    = string
  default = "manifest.json"
}
variable "ssh_username" {
  type    = string
  default = "imagebuild"
}

locals {
  # The image Packer starts from: 10 gets 5's image as a self link (projects/P/global/images/N).
  source_name = element(split("/", var.source_image), length(split("/", var.source_image)) - 1)
  # 5: an image by name wins over a family (as googlecompute does); an empty project is no project
  # (googlecompute then searches the build's project and Google's public image projects).
  kickstart_family   = local.source_name == "" ? var.source_image_family : ""
  kickstart_projects = var.source_image_project == "" ? [] : [var.source_image_project]
  instance_name      = "${var.image_name}-${substr(uuidv4(), 0, 6)}"
  # What proves the image the build's (airflow_provider_imagebuild/targets/gcp_names.py,
  # packer_labels): imagebuild-key is the first 20 hex digits of sha256("<pipeline>/<build_id>");
  # values are label values (lowercase letters, digits, '_' and '-', at most 63).
  labels = {
    imagebuild-key       = substr(sha256("${var.pipeline}/${var.build_id}"), 0, 20)
    imagebuild-build     = substr(regex_replace(lower(var.build_id), "[^a-z0-9_-]", "_"), 0, 63)
    imagebuild-pipeline  = substr(regex_replace(lower(var.pipeline), "[^a-z0-9_-]", "_"), 0, 63)
    imagebuild-milestone = format("m%03d", var.milestone)
    imagebuild-role      = "packer"
    managed-by           = "airflow-provider-imagebuild"
  }
}

source "googlecompute" "kickstart" {
  project_id              = var.gcp_project
  zone                    = var.gcp_zone
  machine_type            = var.gcp_machine_type
  network                 = var.gcp_network
  subnetwork              = var.gcp_subnetwork
  source_image            = local.source_name
  source_image_family     = local.kickstart_family
  source_image_project_id = local.kickstart_projects
  image_name              = var.image_name
  image_labels            = local.labels
  instance_name           = local.instance_name
  labels                  = local.labels
  omit_external_ip        = true
  use_internal_ip         = true
  ssh_username            = var.ssh_username
  metadata_files          = { user-data = "${path.root}/kickstart.cloud-config" }
}

source "googlecompute" "green" {
  project_id              = var.gcp_project
  zone                    = var.gcp_zone
  machine_type            = var.gcp_machine_type
  network                 = var.gcp_network
  subnetwork              = var.gcp_subnetwork
  source_image            = local.source_name
  source_image_project_id = [var.gcp_project]
  image_name              = var.image_name
  image_labels            = local.labels
  instance_name           = local.instance_name
  labels                  = local.labels
  omit_external_ip        = true
  use_internal_ip         = true
  ssh_username            = var.ssh_username
  metadata_files          = { user-data = "${path.root}/green.cloud-config" }
}

build {
  sources = ["source.googlecompute.kickstart", "source.googlecompute.green"]

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
