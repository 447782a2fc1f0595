"""Failure classes (``failures.py``): every row fed the real output of the real tool or client.

Real: Packer (the release `make packer-tools` builds) on broken templates and missing plugins,
ansible-runner on broken playbooks and an unreachable host, boto3 against moto_server (with IAM
authentication switched on for the denied case), openstacksdk against the loopback OpenStack fake,
pyVmomi against govmomi's vCenter simulator, the Azure and Google clients against their loopback
fakes answering as the clouds document (403 ``AuthorizationFailed``, 403 ``forbidden``), and httpx
against a loopback server for the HTTP-level transient rows. Then a persistent failure stops a
milestone without Airflow's retries, and a transient one keeps them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild import failures
from airflow_provider_imagebuild.failures import classify
from airflow_provider_imagebuild.toolchain.locate import tool_path
from tests.dags.conftest import write
from tests.helpers import packer, packer_env
from tests.servers.process import free_port, running


def kind_of(text: str) -> tuple[str, str] | None:
    found = classify(text)
    return (found.row.tool, found.row.kind) if found else None


# -- Packer -------------------------------------------------------------------------------------
PACKER = {
    "broken": 'source "null" "x" {\n  communicator = "none"\nbuild {\n',
    "unset": 'variable "needed" { type = string }\nsource "null" "x" { communicator = "none" }\n'
    'build { sources = ["source.null.x"] }\n',
    "unknown": 'source "null" "x" {\n  communicator = "none"\n  flavour = "x"\n}\n'
    'build { sources = ["source.null.x"] }\n',
    # Packer 1.10 and later: a plugin the template requires, or a builder no installed plugin has
    "plugin": 'packer {\n  required_plugins {\n    nothere = {\n      source  = "github.com/hashicorp/nothere"\n'
    '      version = ">= 1.0.0"\n    }\n  }\n}\nsource "null" "x" { communicator = "none" }\n'
    'build { sources = ["source.null.x"] }\n',
    "builder": 'source "nothere-ebs" "x" {\n  communicator = "none"\n}\nbuild { sources = ["source.nothere-ebs.x"] }\n',
}


@pytest.mark.parametrize("case", sorted(PACKER))
def test_packer_template_errors_are_config(case: str, tmp_path: Path) -> None:
    template = write(tmp_path / f"{case}.pkr.hcl", PACKER[case])
    got = subprocess.run([packer(), "build", "-machine-readable", str(template)], capture_output=True, text=True,
                         timeout=60, env=packer_env(str(tmp_path)))  # fmt: skip
    assert got.returncode != 0
    assert kind_of(got.stdout + got.stderr) == ("packer", failures.CONFIG)


# -- Ansible ------------------------------------------------------------------------------------
def _ansible(tmp_path: Path, playbook: str | None, host: dict[str, Any]) -> str:
    import ansible_runner

    project = tmp_path / "project"
    project.mkdir()
    if playbook is not None:
        write(project / "site.yml", playbook)
    (tmp_path / "runner").mkdir()
    result = ansible_runner.run(private_data_dir=str(tmp_path / "runner"), project_dir=str(project),
                                playbook="site.yml", inventory={"all": {"hosts": {"h": host}}}, quiet=True,
                                envvars={"PATH": tool_path()})  # fmt: skip
    assert result.status == "failed"
    return str(result.stdout.read())


LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}
ANSIBLE = {
    "undefined": ("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: '{{ nope }}'}\n",
                  LOCAL, failures.CONFIG),
    "syntax": ("- hosts: all\n  tasks: [\n", LOCAL, failures.CONFIG),
    "missing": (None, LOCAL, failures.CONFIG),
    "unreachable": ("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n",
                    {"ansible_host": "127.0.0.1", "ansible_port": "1", "ansible_connection": "ssh",
                     "ansible_ssh_common_args": "-o ConnectTimeout=3 -o StrictHostKeyChecking=no"},
                    failures.UNREACHABLE),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ANSIBLE))
def test_ansible_failures_are_classified(case: str, tmp_path: Path) -> None:
    playbook, host, kind = ANSIBLE[case]
    assert kind_of(_ansible(tmp_path, playbook, host)) == ("ansible", kind)


# -- AWS on moto --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto_server that authenticates requests against its IAM (as AWS does)."""
    import sys

    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    port = free_port()
    argv = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(argv, port, log, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as url:
        yield url


def test_aws_denied_and_missing_ami(moto_with_auth: str, moto_url: str) -> None:
    import boto3
    from botocore.exceptions import ClientError

    denied = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_with_auth,
                          aws_access_key_id="AKIANOSUCHUSER000000", aws_secret_access_key="wrong")  # fmt: skip
    with pytest.raises(ClientError) as info:
        denied.describe_images(Owners=["self"])
    assert kind_of(str(info.value)) == ("aws", failures.AUTH)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url,
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    with pytest.raises(ClientError) as info:
        ec2.describe_images(ImageIds=["ami-00000000deadbeef0"])
    assert kind_of(str(info.value)) == ("aws", failures.MISSING_IMAGE)


EC2_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}'
    "</Message></Error></Errors><RequestID>5d3f9c1e-0000-4000-8000-000000000000</RequestID></Response>"
)


def test_aws_throttling_quota_and_spot_as_ec2_answers_them() -> None:
    """moto neither throttles, nor runs out of quota, nor reclaims spot instances: a loopback
    server answers boto3 as EC2 documents those cases (the error response's XML, and an instance
    whose ``stateReason`` is ``Server.SpotInstanceTermination``); boto3 parses them for real."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from tests.servers.http_fake import serving_http

    answers = {
        "RunInstances": (503, EC2_ERROR.format(code="RequestLimitExceeded", message="Request limit exceeded.")),
        "CreateImage": (400, EC2_ERROR.format(code="InstanceLimitExceeded", message="You have requested more "
                                             "instances (1) than your current instance limit of 0 allows")),
        "DescribeInstances": (200, '<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse '
                              'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet><item><instancesSet>'
                              "<item><instanceId>i-0123456789abcdef0</instanceId><instanceState><code>48</code><name>"
                              "terminated</name></instanceState><stateReason><code>Server.SpotInstanceTermination"
                              "</code><message>Server.SpotInstanceTermination: Spot instance termination</message>"
                              "</stateReason></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"),
    }  # fmt: skip

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        action = dict(p.split("=", 1) for p in body.decode().split("&"))["Action"]
        status, xml = answers[action]
        return status, {"Content-Type": "text/xml"}, xml.encode()

    with serving_http(answer, "ec2-answers") as url:
        once = Config(retries={"total_max_attempts": 1})
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                           aws_secret_access_key="testing", config=once)  # fmt: skip
        with pytest.raises(ClientError) as info:
            ec2.run_instances(ImageId="ami-0583d8c7a9c35822c", MinCount=1, MaxCount=1)
        assert kind_of(str(info.value)) == ("aws", failures.THROTTLED)
        with pytest.raises(ClientError) as info:
            ec2.create_image(InstanceId="i-0123456789abcdef0", Name="golden-1")
        assert kind_of(str(info.value)) == ("aws", failures.QUOTA)
        [instance] = ec2.describe_instances()["Reservations"][0]["Instances"]
        assert kind_of(instance["StateReason"]["Message"]) == ("aws", failures.SPOT)


# -- OpenStack, vSphere, Azure, Google Cloud ----------------------------------------------------
def test_openstack_login_and_quota(fake_os: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import openstack
    from keystoneauth1.exceptions import Unauthorized

    from tests.servers.openstack import PROJECT, USER

    def connect(password: str) -> Any:
        return openstack.connect(load_yaml_config=False, load_envvars=False, auth_url=f"{fake_os.url}/identity/v3",
                                 username=USER, password=password, project_name=PROJECT, user_domain_name="Default",
                                 project_domain_name="Default")  # fmt: skip

    with pytest.raises(Unauthorized) as info:
        list(connect("wrong").compute.flavors())
    assert kind_of(str(info.value)) == ("openstack", failures.AUTH)
    from tests.servers.openstack import PASSWORD

    fake_os.fail(
        "GET", r"^/compute/v2\.1/flavors", 403, message="Quota exceeded for instances: Requested 1, but already used 10"
    )
    with pytest.raises(openstack.exceptions.HttpException) as quota:
        list(connect(PASSWORD).compute.flavors())
    assert kind_of(str(quota.value)) == ("any", failures.QUOTA)


def test_vsphere_login(vcsim_endpoint: tuple[str, int]) -> None:
    import ssl

    from pyVim.connect import SmartConnect
    from pyVmomi import vim

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with pytest.raises(vim.fault.InvalidLogin) as info:
        SmartConnect(host=vcsim_endpoint[0], port=vcsim_endpoint[1], user="nobody", pwd="wrong", sslContext=context)
    assert kind_of(str(info.value)) == ("vsphere", failures.AUTH)


def test_azure_and_google_denials(fake_arm: Any, fake_gce: Any) -> None:
    """Both fakes answer as the clouds document a missing role: Azure's 403 ``AuthorizationFailed``
    and Compute Engine's 403 ``forbidden``; the clients' own exceptions carry it."""
    from airflow_provider_imagebuild.clouds.azure import AzureClients
    from airflow_provider_imagebuild.clouds.gcp import GcpClients
    from tests.conftest import AZURE_CONN_ID, AZURE_GROUP, GCP_CONN_ID
    from tests.servers.azure_arm import Fault as ArmFault
    from tests.servers.gce import PROJECT, ZONE
    from tests.servers.gce import Fault as GceFault

    fake_arm.fail_next(ArmFault("GET", ".*virtualMachines.*", status=403, code="AuthorizationFailed", retry_after=None))
    compute = AzureClients.from_connection(AZURE_CONN_ID).compute
    with pytest.raises(Exception) as info:
        compute.virtual_machines.get(AZURE_GROUP, "no-such-vm")
    assert kind_of(str(info.value)) == ("azure", failures.AUTH)

    fake_arm.fail_next(ArmFault("GET", ".*virtualMachines.*", status=404, code="ImageNotFound", retry_after=None))
    with pytest.raises(Exception) as missing:
        compute.virtual_machines.get(AZURE_GROUP, "no-such-vm")
    assert kind_of(str(missing.value)) == ("any", failures.MISSING_IMAGE)

    fake_gce.fail_next(GceFault("instances.get", status=403, reason="forbidden"))
    gce = GcpClients.from_connection(GCP_CONN_ID).compute
    with pytest.raises(Exception) as info:
        gce.instances().get(project=PROJECT, zone=ZONE, instance="no-such").execute()
    assert kind_of(str(info.value)) == ("gcp", failures.AUTH)


# -- HTTP-level transient failures ----------------------------------------------------------------
def test_http_transient_failures(tmp_path: Path) -> None:
    import httpx

    from tests.servers.http_fake import serving_http

    answers = {"/503": (503, {}, {"error": "down"}), "/429": (429, {}, {"error": "slow down"})}
    with serving_http(lambda method, path, headers, body: answers[path], "transient") as url:
        for path, kind in (("/503", failures.SERVER), ("/429", failures.THROTTLED)):
            with pytest.raises(httpx.HTTPStatusError) as info:
                httpx.get(url + path).raise_for_status()
            assert kind_of(str(info.value))[1] == kind  # type: ignore[index]
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(f"http://127.0.0.1:{free_port()}/")
    assert kind_of(str(refused.value)) == ("any", failures.NETWORK)
    import socket

    with socket.socket() as silent:  # listens, never answers: the read times out
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(httpx.TimeoutException) as slow:
            httpx.get(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.3)
    assert kind_of(str(slow.value)) == ("any", failures.TIMEOUT)


def test_every_row_is_exercised() -> None:
    """A row no test above feeds is a row nobody checked against the real tool."""
    tested = {("packer", failures.CONFIG), ("ansible", failures.CONFIG), ("ansible", failures.UNREACHABLE),
              ("aws", failures.AUTH), ("aws", failures.MISSING_IMAGE), ("openstack", failures.AUTH),
              ("any", failures.QUOTA), ("vsphere", failures.AUTH), ("azure", failures.AUTH), ("gcp", failures.AUTH),
              ("any", failures.SERVER), ("http", failures.THROTTLED), ("any", failures.NETWORK),
              ("any", failures.TIMEOUT)}  # fmt: skip
    tested |= {("aws", failures.SPOT), ("aws", failures.THROTTLED), ("aws", failures.QUOTA),
               ("any", failures.MISSING_IMAGE), ("approval", failures.REJECTED)}  # fmt: skip
    tested |= {("imagebuild", failures.POLICY)}  # the policy gate's own words: tests/operators/test_policy_gate.py
    assert {(r.tool, r.kind) for r in failures.ROWS} == tested


# -- the milestone ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("said", "stops"),
    [("An error occurred (UnauthorizedOperation) when calling the RunInstances operation", True),
     ("read tcp 10.0.0.5:443: connection reset by peer", False)],
)  # fmt: skip
def test_a_persistent_failure_is_not_retried_and_a_transient_one_is(said: str, stops: bool, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec
    from airflow_provider_imagebuild.store import open_store
    from tests.helpers import task_context

    command = json.dumps(f"echo '{said}'; exit 1")
    text = (f"pipeline: classes\ncloud: local\nimage_type: base\nstore: sqlite:///{tmp_path}/state.db\n"
            f"milestones:\n  5: {{action: command, command: {command}}}\n")  # fmt: skip
    spec = write(tmp_path / "p/c.yaml", text)
    tasks = {t.state: t for t in build_dag(load_spec(spec)).tasks}  # type: ignore[attr-defined]
    tasks[0].execute(task_context("b1", tasks[0].task_id))
    with pytest.raises(AirflowException) as info:
        tasks[5].execute(task_context("b1", tasks[5].task_id))
    assert isinstance(info.value, AirflowFailException) == stops
    error = str(open_store(f"sqlite:///{tmp_path}/state.db").get("b1").attempts_at(5)[-1].error)
    assert ("auth failure (aws, not retried)" in error) == stops and said in error
