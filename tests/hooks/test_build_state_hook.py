"""The provider as Airflow sees it: registration, the connection type, and the hook's store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from tests.conftest import unique

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture
def airflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_airflow_lists_the_provider_and_its_connection_type(airflow_env: dict[str, str]) -> None:
    env = {**os.environ, **airflow_env}
    got = subprocess.run(
        [AIRFLOW, "providers", "get", "airflow-provider-imagebuild", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert got.returncode == 0, got.stderr
    assert [p["Provider"] for p in json.loads(got.stdout)] == ["airflow-provider-imagebuild"]
    hooks = subprocess.run(
        [AIRFLOW, "providers", "hooks", "-o", "json"], capture_output=True, text=True, env=env, timeout=180
    )
    assert "imagebuild_state" in hooks.stdout
    assert "BuildStateHook" in hooks.stdout


def test_hook_opens_the_store_of_its_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

    url = f"sqlite:///{tmp_path}/hook.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGEBUILD_DEFAULT", json.dumps({"conn_type": "imagebuild_state", "extra": {"store_url": url}})
    )
    store = BuildStateHook().get_store()
    assert store.url == f"sqlite:///{tmp_path}/hook.db"
    store.create_build("h-1", pipeline="p", cloud="local", image_type="t")
    assert BuildStateHook().test_connection()[0]


def test_hook_uses_the_aws_connection_for_dynamodb(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and endpoint come from the Amazon provider's connection (aws_conn_id)."""
    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

    table = unique("hooked")
    monkeypatch.setenv(
        "AIRFLOW_CONN_STATE_AWS",
        json.dumps(
            {
                "conn_type": "imagebuild_state",
                "extra": {"store_url": f"dynamodb://{table}?region=us-east-1", "aws_conn_id": "moto_aws"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_MOTO_AWS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIDFROMCONNECTION",
                "password": "from-connection-secret",
                "extra": {"region_name": "us-east-1", "endpoint_url": moto_url},
            }
        ),
    )
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var)
    store = BuildStateHook("state_aws").get_store()
    store.init()
    store.create_build("h-2", pipeline="p", cloud="aws", image_type="t")
    assert store.get("h-2").completed == [0]
    creds = store.client._request_signer._credentials  # type: ignore[attr-defined]
    assert creds.access_key == "AKIDFROMCONNECTION"


def test_hook_redacts_what_airflow_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.log import mask_secret

    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGEBUILD_DEFAULT",
        json.dumps({"conn_type": "imagebuild_state", "host": f"sqlite:///{tmp_path}/m.db"}),
    )
    mask_secret("plain-looking-value-42")
    store = BuildStateHook().get_store()
    store.create_build("h-3", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    lease = store.begin("h-3", 5, owner="o")
    store.fail("h-3", 5, token=lease.token, error="vault said plain-looking-value-42 is wrong")
    assert "plain-looking-value-42" not in json.dumps(store.get("h-3").to_doc())


def test_hook_without_a_store_url_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

    monkeypatch.setenv("AIRFLOW_CONN_EMPTY", json.dumps({"conn_type": "imagebuild_state"}))
    with pytest.raises(InvalidInput, match="store_url"):
        BuildStateHook("empty").get_store()


def test_provider_metadata_is_one_valid_source_listing_every_module() -> None:
    """``provider.yaml`` is what Airflow gets: valid against Airflow's own schema, and it lists
    every operator module and the hook, each importable."""
    import importlib
    import pkgutil
    from pathlib import Path

    import jsonschema
    from airflow import __file__ as airflow_file

    import airflow_provider_imagebuild.operators as operators
    from airflow_provider_imagebuild.get_provider_info import get_provider_info

    info = get_provider_info()
    schema = json.loads((Path(airflow_file).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    listed = [m for group in info["operators"] for m in group["python-modules"]]
    shipped = {
        f"airflow_provider_imagebuild.operators.{m.name}"
        for m in pkgutil.iter_modules(operators.__path__)
        if m.name not in ("session", "links", "trigger")  # session, extra links, trigger form: no operator
    }
    assert set(listed) == shipped
    from airflow.sdk import BaseOperatorLink

    from airflow_provider_imagebuild.operators import links

    link_classes = {
        f"{links.__name__}.{name}"
        for name, value in vars(links).items()
        if isinstance(value, type) and issubclass(value, BaseOperatorLink) and value is not BaseOperatorLink
    }
    assert set(info["extra-links"]) == link_classes == {f"{links.__name__}.{n}" for n in ("BuildPageLink", "ImageLink")}
    for module in [*listed, *(m for group in info["hooks"] for m in group["python-modules"])]:
        importlib.import_module(module)
    hook = info["connection-types"][0]["hook-class-name"]
    module, _, name = hook.rpartition(".")
    assert getattr(importlib.import_module(module), name).conn_type == info["connection-types"][0]["connection-type"]


def test_hook_opens_an_azure_blob_store_through_a_wasb_connection(
    azurite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real: Azurite, the Azure provider's ``WasbHook`` reading a ``wasb`` connection whose
    connection string names Azurite. The environment's connection string is removed, so the
    store can only have reached Azurite through the Airflow connection."""
    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook
    from tests.conftest import AZURITE_ACCOUNT, AZURITE_KEY

    conn_string = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    assert AZURITE_KEY in conn_string
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGEBUILD_BLOB",
        json.dumps({"conn_type": "wasb", "extra": {"connection_string": conn_string}}),
    )
    url = f"azblob://{unique('hook')}/p?account={AZURITE_ACCOUNT}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGEBUILD_AZ",
        json.dumps({"conn_type": "imagebuild_state", "extra": {"store_url": url, "wasb_conn_id": "imagebuild_blob"}}),
    )
    store = BuildStateHook("imagebuild_az").get_store()
    assert "created" in store.init()
    store.create_build("az-1", pipeline="p", cloud="azure", image_type="t")
    assert BuildStateHook("imagebuild_az").test_connection()[0]
    assert [b.build_id for b in BuildStateHook("imagebuild_az").get_store().list_builds()] == ["az-1"]

    other = url.replace(AZURITE_ACCOUNT, "someoneelse")
    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGEBUILD_AZ",
        json.dumps({"conn_type": "imagebuild_state", "extra": {"store_url": other, "wasb_conn_id": "imagebuild_blob"}}),
    )
    with pytest.raises(InvalidInput, match="not someoneelse"):
        BuildStateHook("imagebuild_az").get_store().get("az-1")


def test_hook_opens_a_cloud_storage_store_through_a_google_connection(
    fake_gcs_url: str, fake_gce: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real: fake-gcs-server, the Google provider's ``GoogleBaseHook`` reading a Google connection
    with a service account key file (its token requests go to the Compute Engine fake's /token),
    google-cloud-storage with those credentials."""
    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook
    from tests.conftest import GCP_CONN_ID

    url = f"gs://{unique('hook')}/p?project=imagebuild-test&endpoint_url={fake_gcs_url}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_IMAGEBUILD_GS",
        json.dumps({"conn_type": "imagebuild_state", "extra": {"store_url": url, "gcp_conn_id": GCP_CONN_ID}}),
    )
    store = BuildStateHook("imagebuild_gs").get_store()
    assert "created" in store.init()
    store.create_build("gs-1", pipeline="p", cloud="gcp", image_type="t")
    assert [b.build_id for b in BuildStateHook("imagebuild_gs").get_store().list_builds()] == ["gs-1"]
