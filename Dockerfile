# Airflow 3.3 with this provider and the tools its operators run: Packer and the plugins of the
# shipped templates' builders, ansible (with its collections) and ansible-runner from the
# provider's `ansible` extra, the SSH client for Ansible's connection to build hosts, and
# debootstrap, qemu-img and mkfs.ext4 for the local target.

# Packer and its plugins, built from their Go modules at the versions scripts/packer-tools.sh pins
# (as `make packer-tools` does; Debian's packer 1.6.6 cannot read the templates' required_plugins).
FROM golang:1.26-bookworm AS packer
COPY scripts/packer-tools.sh /src/scripts/packer-tools.sh
RUN IMAGEBUILD_CACHE=/cache bash /src/scripts/packer-tools.sh /cache/link \
 && mkdir /tools && cp -a "$(dirname "$(readlink /cache/link/packer)")"/. /tools/

FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openssh-client debootstrap qemu-utils e2fsprogs curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# The provider finds Packer in $IMAGEBUILD_TOOLS_DIR and gives it the plugins folder beside it.
COPY --from=packer /tools /opt/imagebuild/tools
ENV IMAGEBUILD_TOOLS_DIR=/opt/imagebuild/tools

USER airflow
# The provider's extras to install: add azure, gcp, vsphere, openstack or celery as the clouds and
# executor need (docker build --build-arg IMAGEBUILD_EXTRAS=ansible,vsphere,openstack .).
ARG IMAGEBUILD_EXTRAS=ansible
COPY --chown=airflow:root pyproject.toml README.md /opt/imagebuild/
COPY --chown=airflow:root airflow_provider_imagebuild /opt/imagebuild/airflow_provider_imagebuild
# The playbooks, Packer templates and sample specs the wheel ships (imagebuild init, the samples)
COPY --chown=airflow:root dags /opt/imagebuild/dags
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/imagebuild[${IMAGEBUILD_EXTRAS}]" \
 && /opt/imagebuild/tools/packer version && ansible-playbook --version && imagebuild --version
