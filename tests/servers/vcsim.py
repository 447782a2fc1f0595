"""govmomi's vCenter simulator (``tests/servers/vcsim/main.go``, built by ``make setup`` from the
simulator library Debian ships) on a free loopback port, over https with a self-signed
certificate. It serves the SOAP SDK that pyVmomi and Packer's vsphere-clone use and the vAPI REST
endpoints (sessions, content libraries); only the login below is accepted. It refuses what vCenter
refuses and the simulator would take: a clone or a template made a VM again on a cluster without
DRS and no host (or a host outside the cluster), a name over 80 characters, a clone named as
something already in its folder (DuplicateName), a cancel of a task that has ended (InvalidState).
A test can make the next clone to a name stall as a long copy does (:func:`stall_clone`). It reports what
VMware Tools would once a VM is powered on (``guest.ipAddress``, one of TEST-NET-2, Tools running),
which the simulator itself never does: the launch test waits for that address."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from tests.servers.process import ROOT, stop

BINARY = ROOT / ".cache/vcsim"
# The default VPX inventory, and a second cluster whose DRS is off (tests/servers/vcsim/main.go).
DATACENTER, CLUSTER, DATASTORE, NETWORK = "DC0", "DC0_C0", "LocalDS_0", "VM Network"
NO_DRS_CLUSTER = "DC0_C1"
SOURCE_TEMPLATE = "DC0_H0_VM0"  # a VM of the inventory, used as the source Packer clones
USER, PASSWORD = "vsphere-admin", "vcsim-Passw0rd!"
LIBRARY = "golden-images"


@contextlib.contextmanager
def vcsim(log: Path) -> Iterator[tuple[str, int]]:
    """Yields (host, port)."""
    assert BINARY.is_file(), f"{BINARY} is missing: run `make setup` (it builds the vCenter simulator)"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(BINARY), "-l", "127.0.0.1:0", "-u", f"{USER}:{PASSWORD}"],
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = proc.stdout.readline().decode().strip()
        assert line and time.monotonic() < deadline, f"vcsim did not start: {log.read_text()[-2000:]}"
        url = urlparse(line)
        assert url.hostname == "127.0.0.1" and url.port
        yield url.hostname, url.port
    finally:
        stop(proc)


def connection(host: str, port: int) -> str:
    """An Airflow connection URI for the simulator (self-signed: ``insecure``)."""
    import json

    return json.dumps(
        {"conn_type": "generic", "host": host, "port": port, "login": USER, "password": PASSWORD,
         "extra": {"insecure": True}}
    )  # fmt: skip


def content_library(host: str, port: int, datastore: str) -> str:
    """The content library publish goes to, made on first use (the vAPI REST API), found by name
    after; returns its id."""
    import ssl

    import httpx

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with httpx.Client(base_url=f"https://{host}:{port}/rest", verify=ctx) as rest:
        session = rest.post("/com/vmware/cis/session", auth=(USER, PASSWORD)).json()["value"]
        rest.headers["vmware-api-session-id"] = session
        found = rest.post("/com/vmware/content/library", params={"~action": "find"}, json={"spec": {"name": LIBRARY}})
        if found.json()["value"]:
            return str(found.json()["value"][0])
        backing = {"type": "DATASTORE", "datastore_id": datastore}
        spec = {"name": LIBRARY, "type": "LOCAL", "storage_backings": [backing]}
        made = rest.post("/com/vmware/content/local-library", json={"create_spec": spec})
        assert made.status_code == 200, made.text
        return str(made.json()["value"])


def stall_clone(host: str, port: int, name: str) -> None:
    """Make the next clone to ``name`` stall as vCenter's copy of a large disk does
    (tests/servers/vcsim/main.go's stallBook): the clone's VM is in the inventory and its task runs
    until cancelled (CancelTask ends it with RequestCanceled; the VM stays for the client to
    destroy), and destroying that VM meanwhile is refused (TaskInProgress). Once: the clone after
    it runs to its end."""
    import httpx

    answer = httpx.post(f"https://{host}:{port}/vcsim/stall-clone", params={"name": name}, verify=False)
    assert answer.status_code == 204, answer.text
