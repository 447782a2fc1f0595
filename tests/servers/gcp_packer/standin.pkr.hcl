# Stands in for dags/packer/rhel8-gcp.pkr.hcl in the tests and the benchmark: Packer's
# googlecompute builder cannot run here (it talks to Compute Engine over https at Google's own
# endpoints). Real Packer runs this template with the variables and environment the operator
# gives the shipped one; a shell-local provisioner then makes the image on the fake Compute
# Engine with the key file in GOOGLE_APPLICATION_CREDENTIALS, and writes the manifest the
# operator reads, as googlecompute's manifest post-processor would. The image gets the labels of
# the shipped template's local.labels (the same expressions: tests/targets/test_gcp_packer.py
# checks both against the target's), and an image of that name stops the build as it stops
# googlecompute (the fake answers 409 alreadyExists).

variable "build_id" { type = string }
variable "milestone" { type = string }
variable "pipeline" { type = string }
variable "image_name" { type = string }
variable "source_image" { type = string }
variable "gcp_project" { type = string }
variable "source_image_family" {
  type    = string
  default = "rhel-8"
}
variable "packer_manifest" { type = string }
variable "compute_endpoint" { type = string }

locals {
  labels = {
    imagebuild-key       = substr(sha256("${var.pipeline}/${var.build_id}"), 0, 20)
    imagebuild-build     = substr(regex_replace(lower(var.build_id), "[^a-z0-9_-]", "_"), 0, 63)
    imagebuild-pipeline  = substr(regex_replace(lower(var.pipeline), "[^a-z0-9_-]", "_"), 0, 63)
    imagebuild-milestone = format("m%03d", var.milestone)
    imagebuild-role      = "packer"
    managed-by           = "airflow-provider-imagebuild"
  }
}

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
      "COMPUTE_ENDPOINT=${var.compute_endpoint}",
      "STANDIN_PROJECT=${var.gcp_project}",
      "STANDIN_IMAGE=${var.image_name}",
      "STANDIN_SOURCE=${var.source_image}",
      "STANDIN_FAMILY=${var.source_image_family}",
      "STANDIN_MANIFEST=${var.packer_manifest}",
      "STANDIN_LABELS=${jsonencode(local.labels)}",
    ]
  }
}
