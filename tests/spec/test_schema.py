"""The spec's JSON Schema (draft 2020-12) for editors and CI: generated from the models spec check
uses, one variant per cloud, unknown keys refused; shipped in the package and current; carried by
every shipped spec and every ``imagebuild init`` project; and of one mind with spec check on
broken specs."""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

import airflow_provider_imagebuild.spec as spec_package
from airflow_provider_imagebuild.build.ids import CLOUDS
from airflow_provider_imagebuild.scaffold.project import PROJECT_SCHEMA, plan_scaffold, scaffold_files
from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from airflow_provider_imagebuild.spec.schema import SCHEMA_FILE, SCHEMA_LINE, schema_json, schema_line, spec_schema
from airflow_provider_imagebuild.spec.yaml_reader import load_yaml
from tests.dags.conftest import ROOT

SHIPPED = sorted((ROOT / "dags/pipelines").glob("*.yaml"))


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _as_json(data: Any) -> Any:
    """A loaded spec as an editor's YAML server sees it: mapping keys are strings."""
    return json.loads(json.dumps(data, default=str))


def test_the_shipped_schema_is_the_one_the_models_make() -> None:
    assert SCHEMA_FILE.read_text() == schema_json(), (
        "the shipped schema is stale: imagebuild spec schema > airflow_provider_imagebuild/schema/"
        "imagebuild-spec.schema.json"
    )


def spec_models() -> list[type[BaseModel]]:
    """Every pydantic model the spec package defines (its modules found on disk, so a new block's
    module is walked without being listed here)."""
    found = []
    for module in pkgutil.iter_modules(spec_package.__path__):
        loaded = importlib.import_module(f"{spec_package.__name__}.{module.name}")
        found += [v for v in vars(loaded).values() if isinstance(v, type) and issubclass(v, BaseModel)
                  and v.__module__ == loaded.__name__]  # fmt: skip
    return found


def test_every_key_of_every_spec_model_has_a_description() -> None:
    """What an editor shows on hover, the schema's description and the spec reference's row all
    come from the field's ``description=``: a key without one reaches people unexplained."""
    models = spec_models()
    assert {"PipelineSpec", "TargetSpec", "AzureTargetSpec", "BootSpec", "NotifyTo"} <= {m.__name__ for m in models}
    bare = [f"{m.__module__}.{m.__name__}.{name}" for m in models for name, f in m.model_fields.items()
            if not (f.description or "").strip()]  # fmt: skip
    assert bare == []
    described = spec_schema()["$defs"]
    assert [(d, k) for d, defn in described.items() for k, prop in defn.get("properties", {}).items()
            if not prop.get("description")] == []  # fmt: skip


def test_one_variant_per_cloud_with_descriptions_defaults_and_no_unknown_keys() -> None:
    schema = spec_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert [v["$ref"] for v in schema["oneOf"]] == [f"#/$defs/Pipeline_{cloud}" for cloud in CLOUDS]
    for cloud in CLOUDS:
        variant = schema["$defs"][f"Pipeline_{cloud}"]
        assert variant["properties"]["cloud"]["const"] == cloud
        assert variant["additionalProperties"] is False
        assert set(variant["required"]) >= {"pipeline", "cloud", "image_type"}
        assert all(prop.get("description") for prop in variant["properties"].values()), cloud
        assert variant["properties"]["max_active_runs"]["default"] == 1
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition["additionalProperties"] is False, name
    local = schema["$defs"]["LocalTargetSpec"]["properties"]
    assert "work_dir" in local and "region" not in local and "instance_type" not in local
    assert spec_schema("gcp")["properties"]["target"]["$ref"] == "#/$defs/GcpTargetSpec"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_carries_the_schema_line_and_validates(path: Path) -> None:
    text = path.read_text()
    assert text.splitlines()[0] == schema_line(path)
    assert (path.parent / text.splitlines()[0].removeprefix(SCHEMA_LINE)).resolve() == SCHEMA_FILE
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in _validator().iter_errors(_as_json(load_yaml(text)))
    ]
    assert errors == []


@pytest.mark.parametrize("cloud", ["local", "azure"])
def test_an_init_project_carries_the_schema_line_and_the_schema(cloud: str, tmp_path: Path) -> None:
    plan = plan_scaffold(
        tmp_path / "golden", cloud, "debian-12" if cloud == "local" else "rhel-9.4", "web", None, False
    )
    files = {f.relative: f for f in scaffold_files(plan)}
    spec = files[plan.spec_path.relative_to(plan.folder).as_posix()].content.decode()
    first = spec.splitlines()[0]
    assert first.startswith(SCHEMA_LINE) and spec.count("$schema=") == 1
    schema_path = (plan.spec_path.parent / first.removeprefix(SCHEMA_LINE)).resolve()
    assert schema_path == (plan.folder / PROJECT_SCHEMA).resolve()
    assert files[PROJECT_SCHEMA].content == SCHEMA_FILE.read_bytes()


def _shipped(name: str) -> dict[str, Any]:
    return load_yaml((ROOT / "dags/pipelines" / name).read_text())


def _drop(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(data)
    node = broken
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return broken


LOCAL = "local-debian-base.yaml"
AZURE = "azure-rhel8-webserver.yaml"
AWS = "aws-rhel8-webserver.yaml"
BROKEN = {
    "unknown top-level key": lambda: {**_shipped(LOCAL), "shedule": "@daily"},
    "unknown milestone key": lambda: _set(_shipped(LOCAL), ("milestones", 15, "playbok"), "x.yml"),
    "unknown target key": lambda: _set(_shipped(AZURE), ("target", "locaton"), "westeurope"),
    "another cloud's key (azure)": lambda: _set(_shipped(AZURE), ("target", "instance_type"), "t3.micro"),
    "another cloud's key (local)": lambda: _set(_shipped(LOCAL), ("target", "region"), "eu-west-1"),
    "bad enum (action)": lambda: _set(_shipped(LOCAL), ("milestones", 15, "action"), "ansble"),
    "bad enum (cloud)": lambda: {**_shipped(LOCAL), "cloud": "mars"},
    "bad enum (boot firmware)": lambda: _set(_shipped(LOCAL), ("target", "boot"), {"green_image": "efi"}),
    "wrong type (retries)": lambda: _set(_shipped(AWS), ("defaults", "retries"), "many"),
    "wrong type (tags)": lambda: {**_shipped(AWS), "tags": "web"},
    "wrong type (duration)": lambda: _set(_shipped(LOCAL), ("defaults",), {"retry_delay": True}),
    "bad duration": lambda: _set(_shipped(LOCAL), ("defaults",), {"execution_timeout": "5 minutes"}),
    "out of bounds (lease)": lambda: _set(_shipped(LOCAL), ("defaults",), {"lease_seconds": 2}),
    "missing required (image_type)": lambda: _drop(_shipped(LOCAL), "image_type"),
    "missing required (pipeline)": lambda: _drop(_shipped(AZURE), "pipeline"),
    "missing required (cloud)": lambda: _drop(_shipped(AWS), "cloud"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_schema_and_spec_check_refuse_the_same_broken_specs(case: str) -> None:
    broken = BROKEN[case]()
    assert list(_validator().iter_errors(_as_json(broken))), f"the schema accepts: {case}"
    with pytest.raises(SpecError):
        parse_spec(broken, "broken.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_schema_and_spec_check_accept_the_shipped_specs_with_durations(path: Path) -> None:
    data = load_yaml(path.read_text())
    data = {**data, "defaults": {**(data.get("defaults") or {}), "retry_delay": "5m", "execution_timeout": "1h30m"}}
    assert list(_validator().iter_errors(_as_json(data))) == []
    assert parse_spec(data, str(path)).defaults.execution_timeout == 5400
