"""docker-compose.yaml and the Dockerfile, checked for structure (no Docker engine runs here):
the CeleryExecutor deployment's services, health checks, start order, the state store wired
through the imagebuild_state connection, the mounted dags, and an image with every tool the
operators call."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from airflow_provider_imagebuild.store.url import parse_store_url
from tests.dags.conftest import ROOT

AIRFLOW = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
INFRA = {"postgres", "redis", "dynamodb"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yaml").read_text()))


def _env(service: dict[str, Any]) -> dict[str, str]:
    """What a container sees: its env files (the harness's deploy/celery.env), then ``environment``."""
    from tests.servers.scaleout import ENV_FILE, deploy_env

    files = [ROOT / f for f in service.get("env_file", [])]
    assert files == [ENV_FILE], "the deployment's settings come from the file the scale-out harness ran"
    return {**deploy_env(), **{k: str(v) for k, v in service.get("environment", {}).items()}}


def test_services_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= AIRFLOW | INFRA | {"airflow-init"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    commands = {name: services[name]["command"] for name in AIRFLOW}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }
    assert "airflow db migrate" in "\n".join(services["airflow-init"]["command"])
    assert "store init" in "\n".join(services["airflow-init"]["command"])


def test_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in AIRFLOW | {"airflow-init"}:
        depends = services[name]["depends_on"]
        for infra in INFRA:
            assert depends[infra] == {"condition": "service_healthy"}, (name, infra)
        if name != "airflow-init":
            assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}


def test_celery_and_the_state_store_connection(compose: dict[str, Any]) -> None:
    for name in AIRFLOW | {"airflow-init"}:
        env = _env(compose["services"][name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        conn = json.loads(env["AIRFLOW_CONN_IMAGEBUILD_DEFAULT"])
        assert conn["conn_type"] == "imagebuild_state"
        url = parse_store_url(conn["extra"]["store_url"])
        assert (url.scheme, url.endpoint_url) == ("dynamodb", "http://dynamodb:8000")
        aws_conn = conn["extra"]["aws_conn_id"]
        assert json.loads(env[f"AIRFLOW_CONN_{aws_conn.upper()}"])["conn_type"] == "aws"
        assert env["IMAGEBUILD_STORE_CONN_ID"] == "imagebuild_default"
        # what the scale-out run needed to ride out a broker restart
        assert json.loads(env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"])["task_publish_retry_policy"]["max_retries"]
        assert int(env["AIRFLOW__CELERY__TASK_PUBLISH_MAX_RETRIES"]) >= 60


def test_the_broker_keeps_its_queue_across_a_restart(compose: dict[str, Any]) -> None:
    """The same persistence the scale-out harness's Redis ran with, on a volume."""
    from tests.servers.scaleout import REDIS_PERSISTENCE

    redis = compose["services"]["redis"]
    assert redis["command"][1:] == REDIS_PERSISTENCE
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_dags_are_mounted_and_found(compose: dict[str, Any]) -> None:
    for name in AIRFLOW | {"airflow-init"}:
        service = compose["services"][name]
        assert "./dags:/opt/airflow/dags" in service["volumes"], name
        assert _env(service)["IMAGEBUILD_PIPELINES_DIR"].startswith("/opt/airflow/dags/")
        assert service["build"] == "." and service["image"].startswith("airflow-provider-imagebuild")


# What the operators and targets run, and the Debian package that provides each (Packer is built
# from its Go modules in a stage of its own: test_dockerfile_builds_packer_as_make_packer_tools_does).
TOOLS = {
    "ssh": "openssh-client",  # Ansible's connection to EC2 build hosts
    "ssh-keygen": "openssh-client",  # the local target's build key
    "debootstrap": "debootstrap",  # local kickstart
    "qemu-img": "qemu-utils",  # local seal
    "mkfs.ext4": "e2fsprogs",  # local seal
}


def test_dockerfile_installs_what_the_operators_call() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+", text, re.MULTILINE)
    install = re.search(r"apt-get install[^\n]*\\\n(.*?)\n &&", text, re.DOTALL)
    assert install, "no apt-get install in the Dockerfile"
    packages = set(install.group(1).replace("\\", " ").split())
    for tool, package in TOOLS.items():
        assert package in packages, f"{tool} ({package}) is not installed by the Dockerfile"
    assert '"/opt/imagebuild[${IMAGEBUILD_EXTRAS}]"' in text and "ARG IMAGEBUILD_EXTRAS=ansible" in text
    assert "COPY --chown=airflow:root dags /opt/imagebuild/dags" in text  # the wheel ships dags/ (init, samples)
    assert "apache-airflow==${AIRFLOW_VERSION}" in text  # keeps the base image's Airflow
    sources = " ".join(p.read_text() for p in (ROOT / "airflow_provider_imagebuild").rglob("*.py"))
    for tool in set(TOOLS) - {"ssh"}:  # ssh is run by Ansible, the others by this package
        assert f'"{tool}"' in sources, f"{tool} is listed but no operator calls it"


def test_dockerfile_builds_packer_as_make_packer_tools_does() -> None:
    """The image's Packer is the pinned release with its plugins (the shipped templates'
    required_plugins), found through $IMAGEBUILD_TOOLS_DIR with its plugins folder beside it; not
    Debian's 1.6.6, which cannot read them."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM golang:1\.2[6-9][\w.-]* AS packer$", text, re.MULTILINE)
    assert "bash /src/scripts/packer-tools.sh" in text
    assert "COPY --from=packer /tools /opt/imagebuild/tools" in text
    assert "ENV IMAGEBUILD_TOOLS_DIR=/opt/imagebuild/tools" in text
    assert "/opt/imagebuild/tools/packer version" in text
