# Airflow 3.3 with this provider and the tools its operators run: Packer (amazon-ebs and the
# other builders built in), ansible (with its collections) and ansible-runner from the provider's
# `ansible` extra, the SSH client for Ansible's connection to build hosts, and debootstrap,
# qemu-img and mkfs.ext4 for the local target.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      packer openssh-client debootstrap qemu-utils e2fsprogs curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

USER airflow
# The provider's extras to install: add azure, gcp, vsphere, openstack or celery as the clouds and
# executor need (docker build --build-arg IMAGEBUILD_EXTRAS=ansible,vsphere,openstack .).
ARG IMAGEBUILD_EXTRAS=ansible
COPY --chown=airflow:root pyproject.toml README.md /opt/imagebuild/
COPY --chown=airflow:root airflow_provider_imagebuild /opt/imagebuild/airflow_provider_imagebuild
# The playbooks, Packer templates and sample specs the wheel ships (imagebuild init, the samples)
COPY --chown=airflow:root dags /opt/imagebuild/dags
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/imagebuild[${IMAGEBUILD_EXTRAS}]" \
 && packer version && ansible-playbook --version && imagebuild --version
