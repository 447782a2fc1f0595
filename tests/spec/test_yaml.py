"""Spec files that used to stall or mislead: YAML 1.1 surprises, duplicate keys, alias bombs,
non-UTF-8 bytes and huge files. Each is refused (or read as written) with the file and the
reason, per file: the other pipelines of the folder still load, in the DAG file and in
``imagebuild spec check``. Timings of the refusals are printed by ``benchmarks/spec_bench.py``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_imagebuild.dag_factory import load_pipelines
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from airflow_provider_imagebuild.spec.yaml_reader import MAX_NODES, load_yaml
from tests.cli.test_cli import run
from tests.dags.conftest import write

GOOD = "pipeline: good\ncloud: local\nimage_type: base\nmilestones:\n  42: {action: command, key: k, command: 'true'}\n"


def bomb_in_extravars(levels: int = 9) -> str:
    anchors = ["lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        anchors.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    body = "\n".join(f"        {a}" for a in anchors)
    return (
        "pipeline: bomb\ncloud: local\nimage_type: base\nmilestones:\n"
        "  15:\n    action: ansible\n    playbook: p.yml\n    extravars:\n      nested:\n" + body + "\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("050", 50),  # YAML 1.1: octal 40
        ("0x32", "0x32"),  # YAML 1.1: 50
        ("0o17", "0o17"),
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("1:30", "1:30"),  # YAML 1.1: sexagesimal 90
        ("yes", "yes"),  # YAML 1.1: True
        ("no", "no"),  # YAML 1.1: False (the Norway problem)
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("2026-01-01", "2026-01-01"),  # YAML 1.1: a date
        ("true", True),
        ("~", None),
        ("1e3", 1000.0),
        ("+5", 5),
    ],
)
def test_yaml_1_1_traps_read_as_written(text: str, expected: Any) -> None:
    assert load_yaml(f"v: {text}\n") == {"v": expected}


def test_codes_and_names_from_the_traps() -> None:
    spec = parse_spec(load_yaml(GOOD.replace("42:", "050:").replace("key: k,", "key: k, title: no,") + "os: no\n"))
    assert list(spec.milestones) == [50] and spec.os == "no" and spec.milestones[50].title == "no"
    with pytest.raises(SpecError, match=r"milestones\.0x32: must be an integer milestone code"):
        parse_spec(load_yaml(GOOD.replace("42:", "0x32:")))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD + "  42: {action: noop}\n", "line 6"),  # milestone 42 twice
        (GOOD.replace("42:", "050:") + "  50: {action: noop}\n", "line 6"),  # 050 and 50 are one code
        ("pipeline: a\n" + GOOD, "line 2"),  # pipeline twice
    ],
)
def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path / "dup.yaml", text)
    with pytest.raises(SpecError, match=rf"dup\.yaml: {where}: .*given twice \(first on line \d+\)"):
        load_spec(path)


def test_merge_keys_still_work() -> None:
    text = "pipeline: m\ncloud: local\nimage_type: b\nx: &r {retries: 3}\n"
    raw = load_yaml(text)
    raw.pop("x")
    assert parse_spec(raw).pipeline == "m"
    assert load_yaml("d: &d {a: 1, b: 2}\ne:\n  <<: *d\n  b: 3\n")["e"] == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    "text",
    [
        bomb_in_extravars(),
        "a: &a [*a]\n",  # recursive
        "v: " + "[" * 100 + "]" * 100 + "\n",  # nested too deep
        "tags: [" + ", ".join(["0"] * MAX_NODES) + "]\n",  # more values than a spec holds, in 150 KB
    ],
    ids=["alias-bomb", "recursive-alias", "deep", "many-values"],
)
def test_bombs_are_refused_before_anything_walks_them(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "bomb.yaml", text)
    with pytest.raises(SpecError, match=r"bomb\.yaml: (line \d+: )?is not valid YAML: .*(alias|nested|values)"):
        load_spec(path)


def test_a_huge_spec_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(GOOD + "".join(f"  {i}: {{action: noop}}\n" for i in range(101, 100_101)))
    with pytest.raises(SpecError, match=r"huge\.yaml: is \d+ bytes; a spec may be at most 512 KiB"):
        load_spec(path)


def test_broken_files_are_per_file_errors_in_the_dag_file_and_spec_check(tmp_path: Path) -> None:
    """A non-UTF-8 file, an alias bomb and a huge file next to a good spec: the good pipeline
    loads, each broken file is named, nothing raises out of the DAG file."""
    folder = tmp_path / "pipelines"
    write(folder / "good.yaml", GOOD)
    (folder / "latin1.yaml").write_bytes("pipeline: caf\xe9\ncloud: local\nimage_type: b\n".encode("latin-1"))
    write(folder / "bomb.yaml", bomb_in_extravars())
    write(folder / "p.yml", "- hosts: all\n  tasks: []\n")  # the bomb's playbook: a spec error too
    namespace: dict[str, Any] = {}
    dags = load_pipelines(folder, namespace)
    assert list(dags) == ["imagebuild_good"]
    errors = "; ".join(namespace["imagebuild_broken_specs"].spec_errors)
    assert f"{folder / 'latin1.yaml'}: is not UTF-8 text (byte 0xe9 at offset 13)" in errors
    assert f"{folder / 'bomb.yaml'}: line" in errors and "alias bomb" in errors

    checked = run("spec", "check", str(folder))
    assert checked.returncode == 2 and "Traceback" not in checked.stderr
    assert f"ok {folder / 'good.yaml'}" in checked.stdout
    assert "latin1.yaml: is not UTF-8 text" in checked.stderr  # no line to name: the file is not text
    assert re.search(r"bomb\.yaml:[0-9]+:[0-9]+: is not valid YAML: .*alias bomb", checked.stderr), checked.stderr


def test_a_nul_in_any_value_is_refused_where_it_stands(tmp_path: Path) -> None:
    text = GOOD.replace("command: 'true'", 'command: "echo a\\0b", env: {V: x}')
    with pytest.raises(SpecError, match=r"nul\.yaml: milestones\.42\.command: must not contain a NUL"):
        load_spec(write(tmp_path / "nul.yaml", text))


def test_a_milestone_title_is_bounded_like_the_records_titles(tmp_path: Path) -> None:
    """A title becomes the task's display name and every reader's label: at most 120 characters
    (MAX_TITLE, what a record keeps), refused by spec check naming the key rather than cut later."""
    fits = parse_spec(load_yaml(GOOD.replace("key: k,", "key: k, title: '" + "t" * 120 + "',")))
    assert fits.milestones[42].title == "t" * 120
    text = GOOD.replace("key: k,", "key: k, title: '" + "t" * 100_000 + "',")
    with pytest.raises(SpecError, match=r"long\.yaml: milestones\.42\.title: .*at most 120 characters"):
        load_spec(write(tmp_path / "long.yaml", text))


def test_unsafe_tags_stay_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "evil.yaml", "pipeline: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    assert yaml.__with_libyaml__
    from airflow_provider_imagebuild.spec.yaml_reader import _Loader

    assert _Loader.__mro__[1].__module__ == "yaml._yaml"  # libyaml's parser, not the 10x slower Python one
