# Milestones 5 (kickstart) and 10 (green image) of the AWS RHEL 8 sample pipeline.
#
# The milestone operator passes the build's identity and the target's settings in a var file
# (build_id, milestone, pipeline, image_name, source_image, aws_region, aws_endpoint, and
# packer_manifest: where the manifest post-processor writes, read back by the operator) and AWS
# credentials in Packer's environment. 5 starts from the vendor image (target.source_image) and
# applies updates at first boot; 10 starts from 5's image and adds the default user, SSH key
# login, sudo and networking defaults. Both configure the instance through cloud-init user data,
# so the template needs no provisioner and Packer only waits for SSH before capturing.
# Everything after 10 is Ansible on the build host.
#
# image_name comes from the target (within EC2's AMI name rules, whatever the pipeline and build
# id). The AMI gets the build's tags (BuildId, Pipeline, Milestone, ManagedBy): a retry of the
# milestone after Packer made the AMI adopts it by those tags and the account instead of running
# into "is used by an existing AMI".

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.8.2, < 2.0.0"
    }
  }
}

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_name" { type = string }
variable "source_image" { type = string }
variable "aws_region" { type = string }
variable "image_type" {
  type    = string
  default = "webserver"
}
variable "packer_manifest" {
  type    = string
  default = "manifest.json"
}
variable "aws_endpoint" {
  type    = string
  default = ""
}
variable "instance_type" {
  type    = string
  default = "t3.medium"
}
variable "communicator" {
  type        = string
  default     = "ssh"
  description = "ssh waits until the instance answers; none (tests against moto) captures at once"
}
variable "ssh_username" {
  type    = string
  default = "ec2-user"
}

locals {
  local_endpoint = var.aws_endpoint != ""
  tags = {
    BuildId   = var.build_id
    Pipeline  = var.pipeline
    Milestone = var.milestone
    ImageType = var.image_type
    ManagedBy = "airflow-provider-imagebuild"
  }
}

source "amazon-ebs" "kickstart" {
  region                     = var.aws_region
  source_ami                 = var.source_image
  instance_type              = var.instance_type
  ami_name                   = var.image_name
  communicator               = var.communicator
  ssh_username               = var.ssh_username
  custom_endpoint_ec2        = var.aws_endpoint
  skip_credential_validation = local.local_endpoint
  skip_metadata_api_check    = local.local_endpoint
  skip_region_validation     = local.local_endpoint
  user_data                  = file("${path.root}/kickstart.cloud-config")
  tags                       = local.tags
  run_tags                   = local.tags
}

source "amazon-ebs" "green" {
  region                     = var.aws_region
  source_ami                 = var.source_image
  instance_type              = var.instance_type
  ami_name                   = var.image_name
  communicator               = var.communicator
  ssh_username               = var.ssh_username
  custom_endpoint_ec2        = var.aws_endpoint
  skip_credential_validation = local.local_endpoint
  skip_metadata_api_check    = local.local_endpoint
  skip_region_validation     = local.local_endpoint
  user_data                  = file("${path.root}/green.cloud-config")
  tags                       = local.tags
  run_tags                   = local.tags
}

build {
  sources = ["source.amazon-ebs.kickstart", "source.amazon-ebs.green"]

  post-processor "manifest" {
    output     = var.packer_manifest
    strip_path = true
  }
}
