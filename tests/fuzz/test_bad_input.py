"""Fuzzing the three front doors: store URLs, pipeline specs and the CLI.

Every input gives either success or a typed error with a message; never an unexpected exception
(a traceback for the user), and never a write after a failed validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput
from airflow_provider_imagebuild.spec import PipelineSpec, SpecError, parse_spec
from airflow_provider_imagebuild.store import open_store, parse_store_url

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

url_text = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda s, rest: f"{s}://{rest}",
        st.sampled_from(["sqlite", "file", "dynamodb", "s3", "sqlite+s3", "x"]),
        st.text(max_size=60),
    ),
)


@FUZZ
@given(url_text)
def test_store_urls_parse_or_say_why(text: str) -> None:
    try:
        parsed = parse_store_url(text)
    except InvalidInput as exc:
        assert exc.field.startswith("store") and exc.reason
        return
    assert parsed.scheme in ("sqlite", "file", "dynamodb", "s3", "sqlite+s3")


SPEC_KEYS = [
    "pipeline",
    "cloud",
    "image_type",
    "os",
    "schedule",
    "store",
    "store_conn_id",
    "defaults",
    "milestones",
    "include_standard",
    "tags",
    "catchup",
    "bogus",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-200, 200),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["aws", "local", "command", "noop", "0 2 * * *", "p-1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
milestone_entries = st.dictionaries(
    st.one_of(st.integers(-10, 110), st.text(max_size=4), st.booleans()),
    st.fixed_dictionaries(
        {},
        optional={
            "action": st.sampled_from(["command", "noop", "packer", "x"]),
            "command": st.one_of(st.text(max_size=10), st.lists(st.text(max_size=5))),
            "key": st.text(max_size=10),
            "retries": scalars,
        },
    ),
    max_size=4,
)
specs = st.one_of(
    values,
    st.fixed_dictionaries(
        {
            "pipeline": st.sampled_from(["web", "p-1", "", "bad name"]),
            "cloud": st.sampled_from(["aws", "mars"]),
            "image_type": st.sampled_from(["t", ""]),
        },
        optional={k: values for k in SPEC_KEYS if k not in ("pipeline", "cloud", "image_type")}
        | {"milestones": milestone_entries},
    ),
)


@FUZZ
@given(specs)
def test_specs_load_or_name_file_and_key(raw: Any) -> None:
    try:
        spec = parse_spec(raw, "fuzz.yaml")
    except SpecError as exc:
        assert str(exc).startswith("fuzz.yaml") and exc.reason
        return
    assert isinstance(spec, PipelineSpec)


@FUZZ
@given(st.text(max_size=200))
def test_spec_text_loads_or_names_the_file(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from airflow_provider_imagebuild.spec import load_spec

    path = tmp_path_factory.mktemp("spec") / "p.yaml"
    path.write_text(text)
    try:
        load_spec(path)
    except SpecError as exc:
        assert str(path) in str(exc)


ids = st.one_of(st.text(max_size=140), st.sampled_from(["../x", "a/b", "", "x" * 200, "ok-1", "ok.2"]))
codes = st.one_of(st.integers(-10, 120), st.booleans(), st.text(max_size=4), st.floats(allow_nan=False), st.none())


@FUZZ
@given(build_id=ids, code=codes)
def test_store_refuses_bad_ids_and_codes_without_writing(
    tmp_path_factory: pytest.TempPathFactory, build_id: str, code: Any
) -> None:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('s')}/s.db")
    store.create_build("anchor", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    before = store.get("anchor").to_doc()
    for call in (
        lambda: store.create_build(build_id, pipeline="p", cloud="aws", image_type="t"),
        lambda: store.begin("anchor", code, owner="fuzz"),
        lambda: store.reset("anchor", to=code, reason="fuzz"),
    ):
        try:
            call()
        except ImageBuildError as exc:
            assert str(exc)
    after = store.get("anchor")
    if after.version != before["version"]:  # only a valid begin(5) or reset may have written
        assert code in (5, 100) and not isinstance(code, bool)


CLI_WORDS = [
    "build",
    "store",
    "init",
    "create",
    "begin",
    "heartbeat",
    "complete",
    "fail",
    "reset",
    "show",
    "history",
    "list",
    "--json",
    "--owner",
    "--token",
    "--to",
    "--reason",
    "--status",
    "--cloud",
    "--pipeline",
    "--image-type",
    "--states",
    "--meta",
    "--output",
    "--error",
    "--lease-seconds",
    "b1",
    "5",
    "0,5,100",
    "aws",
    "k=v",
    "x",
    "-1",
    "True",
    "../x",
    "completed",
    "999999999999",
]


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.sampled_from(CLI_WORDS), st.text(max_size=8)), max_size=9))
def test_cli_never_shows_a_traceback(tmp_path_factory: pytest.TempPathFactory, argv: list[str]) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli')}/s.db"
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", url, *argv], catch_exceptions=True)
    assert result.exit_code in (0, 2, 3, 4, 5), (argv, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (argv, repr(result.exception))
    if "--json" in argv and result.exit_code == 0 and result.output.strip().startswith(("{", "[")):
        json.loads(result.output)


def test_yaml_is_parsed_safely(tmp_path: Path) -> None:
    from airflow_provider_imagebuild.spec import load_spec

    path = tmp_path / "evil.yaml"
    path.write_text("pipeline: !!python/object/apply:os.system ['echo pwned']\ncloud: aws\nimage_type: t\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    assert yaml.__with_libyaml__ in (True, False)
