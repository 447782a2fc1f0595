"""The shipped vSphere and OpenStack sample pipelines pointed at loopback: govmomi's vCenter
simulator and the OpenStack fake, Ansible over chroot.

Used by the end-to-end tests (tests/operators/test_private_pipelines.py) and by
``benchmarks/vsphere_bench.py``: the shipped specs and playbooks with the connection, inventory
and source image changed. Both run the shipped Packer templates with the real builders
(``vsphere-clone``, ``openstack``), which reach the simulator and the fake; ``communicator: none``,
as the instances run nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.servers.process import ROOT
from tests.servers.samples import launch_tested, localised

VSPHERE = ROOT / "dags/pipelines/vsphere-rhel8-webserver.yaml"
VSPHERE_DAG_ID = "imagebuild_vsphere_rhel8_webserver"
OPENSTACK = ROOT / "dags/pipelines/openstack-rhel8-webserver.yaml"
OPENSTACK_DAG_ID = "imagebuild_openstack_rhel8_webserver"


def vsphere_spec(store_url: str, build_host_root: Path, conn_id: str, guest: Any | None = None) -> str:
    """The shipped vSphere spec on the simulator's default inventory (no ``golden`` folder there).
    The launch test (97) reaches ``guest`` (tests/servers/guest.py), or is left out without one."""
    from tests.servers.vcsim import CLUSTER, DATACENTER, DATASTORE, LIBRARY, NETWORK, SOURCE_TEMPLATE

    target = {"vsphere_conn_id": conn_id, "datacenter": DATACENTER, "cluster": CLUSTER, "datastore": DATASTORE,
              "folder": "", "network": NETWORK, "template": SOURCE_TEMPLATE, "content_library": LIBRARY}  # fmt: skip
    return launch_tested(localised(VSPHERE, store_url, build_host_root, target, {}), guest)


def openstack_spec(
    store_url: str, build_host_root: Path, conn_id: str, source_image: str, guest: Any | None = None
) -> str:
    """The shipped OpenStack spec on the fake (its flavor ``m1.small`` and network ``build-net``).
    The launch test (97) reaches ``guest`` (tests/servers/guest.py), or is left out without one."""
    target = {"openstack_conn_id": conn_id, "source_image": source_image}
    spec = localised(OPENSTACK, store_url, build_host_root, target, {"vars": {"communicator": "none"}})
    return launch_tested(spec, guest)
