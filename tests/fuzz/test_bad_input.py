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
from airflow_provider_imagebuild.spec.pipeline import PipelineSpec, SpecError, parse_spec
from airflow_provider_imagebuild.store import open_store, parse_store_url

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

url_text = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda s, rest: f"{s}://{rest}",
        st.sampled_from(["sqlite", "file", "dynamodb", "s3", "sqlite+s3", "azblob", "gs", "x"]),
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
    assert parsed.scheme in ("sqlite", "file", "dynamodb", "s3", "sqlite+s3", "azblob", "gs")


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
    from airflow_provider_imagebuild.spec.pipeline import load_spec

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
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    path = tmp_path / "evil.yaml"
    path.write_text("pipeline: !!python/object/apply:os.system ['echo pwned']\ncloud: aws\nimage_type: t\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    assert yaml.__with_libyaml__ in (True, False)


# -- the hardening classes: control characters, reserved names, YAML 1.1 traps, alias bombs,
# -- oversize outputs and secret-looking keys --------------------------------------------------
SECRET_KEYS = ["password", "DB_PASSWORD", "api_key", "token", "client_secret", "AccessKey", "x-auth-token"]
nasty_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from(["a", "\x00", "\n", "\x1b", "\u202e", "\x85", "\u2028", "é", "5"]), max_size=12),
    st.builds(lambda n: "x" * n, st.integers(3990, 4010)),
)
output_keys = st.one_of(st.sampled_from([*SECRET_KEYS, "image_id", "note", "bad key", "x\n"]), st.text(max_size=10))
output_values = st.one_of(
    nasty_text, st.integers(-(2**70), 2**70), st.floats(), st.dictionaries(output_keys, nasty_text, max_size=2)
)


@FUZZ
@given(st.dictionaries(output_keys, output_values, max_size=4))
def test_outputs_are_stored_as_checked_or_refused_without_a_write(
    tmp_path_factory: pytest.TempPathFactory, outputs: dict[str, Any]
) -> None:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('o')}/s.db")
    store.create_build("o-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    lease = store.begin("o-1", 5, owner="fuzz")
    version = store.get("o-1").version
    try:
        rec = store.complete("o-1", 5, token=lease.token, outputs=outputs)
    except InvalidInput as exc:
        assert exc.field.startswith("outputs") and "\n" not in str(exc) and "\x00" not in str(exc)
        assert store.get("o-1").version == version
        return
    stored = json.dumps(rec.milestones[5].outputs)
    assert not any(c in stored for c in ("\\u0000", "\\u001b", "\\u202e"))
    from airflow_provider_imagebuild.redact.patterns import is_secret_key

    assert not any(is_secret_key(k) for k in rec.milestones[5].outputs)


@FUZZ
@given(st.sampled_from(SECRET_KEYS), st.sampled_from(["=", ": ", " = ", '": "']), st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]) | st.sampled_from("!@#%^*-_+/."),
    min_size=6, max_size=30,
), st.sampled_from(["", "error: ", "[ERROR] db: ", "WARN x=y ", '{"msg": "failed", "', "--flag=1 "]))  # fmt: skip
def test_a_secret_is_hidden_whatever_precedes_it(key: str, sep: str, value: str, prefix: str) -> None:
    from airflow_provider_imagebuild.redact.patterns import _MESSAGE_WORDS, redact_patterns

    quoted = sep == '": "'
    line = f"{prefix}{'' if not quoted else chr(34)}{key}{sep}{value}{chr(34) if quoted else ''} done"
    if value.lower() in line.lower().replace(value.lower(), "", 1) or value in _MESSAGE_WORDS:
        return  # the value also appears elsewhere, or is a word that starts a product message
    assert value not in redact_patterns(line), (line, redact_patterns(line))


yaml_traps = st.sampled_from(["050", "0x32", "1:30", "yes", "no", "on", "~", "1_0", "2026-01-01", "\u0665", "'5'", "5"])


@FUZZ
@given(
    code=yaml_traps,
    value=yaml_traps,
    alias_levels=st.integers(0, 9),
    duplicate=st.booleans(),
)
def test_yaml_traps_and_aliases_load_as_written_or_name_the_file(
    tmp_path_factory: pytest.TempPathFactory, code: str, value: str, alias_levels: int, duplicate: bool
) -> None:
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    anchors = "\n".join(
        ["    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        + [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, alias_levels + 1)]
    )
    text = (
        f"pipeline: p\ncloud: local\nimage_type: t\nos: {value}\nmilestones:\n"
        f"  {code}: {{action: command, key: k, command: 'true', env: {{V: x}}}}\n"
        + (f"  {code}: {{action: noop}}\n" if duplicate else "")
        + f"tags: []\ndefaults: {{}}\ndescription: d\ninclude_standard: false\n# anchors\n#{anchors}\n"
    )
    path = tmp_path_factory.mktemp("y") / "t.yaml"
    path.write_text(text)
    try:
        spec = load_spec(path)
    except SpecError as exc:
        assert str(exc).startswith(str(path)) and exc.reason
        return
    assert not duplicate
    assert all(isinstance(c, int) and not isinstance(c, bool) for c in spec.milestones)
    assert isinstance(spec.os, str)


reserved_like = st.one_of(
    st.sampled_from(["latest", "versions", "rootfs", "ssh", "image.raw", "checkpoint-010.tar", "night-1", "x.qcow2"]),
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z").filter(lambda s: ".." not in s),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(build_id=reserved_like)
def test_no_build_id_can_corrupt_the_local_catalog(tmp_path_factory: pytest.TempPathFactory, build_id: str) -> None:
    """Whatever a build is called (``latest``, ``versions``, a file name of the work directory),
    publishing it leaves every other version whole and ``latest`` pointing at a version."""
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from airflow_provider_imagebuild.targets.local import LocalTarget

    tmp = tmp_path_factory.mktemp("cat")
    target = LocalTarget(
        TargetSpec(catalog=str(tmp / "catalog"), work_dir=str(tmp / "work")), pipeline="nightly", image_type="b"
    )
    store = open_store(f"sqlite:///{tmp}/s.db")
    ids = ["night-1", build_id] if build_id != "night-1" else ["night-1"]
    for bid in ids:
        store.create_build(bid, pipeline="nightly", cloud="local", image_type="b", plan=[0, 95, 100])
        image = target.image_path(store.get(bid))
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(bid.encode())
        lease = store.begin(bid, 95, owner="fuzz")
        target.publish(store.complete(bid, 95, token=lease.token, outputs={"image_id": str(image)}), str(image))
    folder = tmp / "catalog/nightly"
    assert (folder / "latest").resolve() == (folder / "versions" / ids[-1]).resolve()
    for bid in ids:
        meta = json.loads((folder / "versions" / bid / "metadata.json").read_text())
        assert meta["build_id"] == bid and (folder / "versions" / bid / meta["image"]).read_bytes() == bid.encode()


# -- the Concourse resource type: any request, any params, any files in the put's sources -------
PUT_KEYS = ["build_id", "build_id_file", "state", "owner", "lease_seconds", "token", "token_file", "outputs",
            "outputs_file", "error", "to", "reason", "bogus"]  # fmt: skip
resource_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["r-1", "5", "100", "300", "2.9", "abc", "lease/token", "outside", "../x", "0" * 8, "\x00"]),
)
resource_values = st.recursive(
    resource_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
resource_requests = st.fixed_dictionaries(
    {
        "source": st.fixed_dictionaries(
            {},
            optional={
                "pipeline": resource_values,
                "cloud": resource_values,
                "build_id": resource_values,
                "env": st.dictionaries(st.sampled_from(["IB_FUZZ", "", "A=B", "1X"]), resource_values, max_size=2),
                "bogus": resource_values,
            },
        ),
    },
    optional={
        "params": st.fixed_dictionaries(
            {"action": st.sampled_from(["begin", "complete", "fail", "reset", "x"])},
            optional={k: resource_values for k in PUT_KEYS},
        ),
        "version": st.one_of(
            resource_values,
            st.fixed_dictionaries({"build_id": resource_values, "version": resource_values}),
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=st.sampled_from(["check", "in", "out"]),
    request=resource_requests,
    raw=st.one_of(st.none(), st.binary(max_size=40), st.text(alphabet='[]{}":,0123456789eE.-NaInfity', max_size=60)),
)
def test_the_concourse_resource_answers_any_request_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, command: str, request: dict[str, Any], raw: bytes | str | None
) -> None:
    """Exit 0 with a JSON answer, or exit 1 with one line on stderr: never a traceback, never the
    catch-all's ``unexpected`` (each refusal names its field)."""
    import contextlib
    import io
    import os

    from airflow_provider_imagebuild.concourse import resource

    tmp = tmp_path_factory.mktemp("res")
    url = f"sqlite:///{tmp}/s.db"
    store = open_store(url)
    store.create_build("r-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    (tmp / "sources/lease").mkdir(parents=True)
    (tmp / "sources/lease/token").write_text("zz not a token \x00")
    (tmp / "outside").write_text("secret")
    (tmp / "sources/outside").symlink_to(tmp / "outside")
    request["source"]["store"] = url
    data = raw if raw is not None else json.dumps(request)
    folder = {"check": [], "in": [str(tmp / "get")], "out": [str(tmp / "sources")]}[command]
    saved = dict(os.environ)
    err, out = io.StringIO(), io.StringIO()
    stdin = io.BytesIO(data if isinstance(data, bytes) else data.encode())
    try:
        with contextlib.redirect_stderr(err):
            code = resource.main([command, *folder], stdin=stdin, stdout=out)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    lines = err.getvalue().strip().splitlines()
    assert code in (0, 1)
    if code == 1:
        assert len(lines) == 1 and "unexpected" not in lines[0], (request, raw, err.getvalue())
        assert "secret" not in lines[0]
    else:
        json.loads(out.getvalue())
