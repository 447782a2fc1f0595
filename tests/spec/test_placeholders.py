"""The placeholder rule of the spec loader: any string value holding ``<REPLACE: what>`` refuses the
spec as ``key.path: fill in <what>``, whatever the key and the cloud (a spec ``imagebuild init`` made,
or one a person copied by hand), the others named too; the DAG file refuses it the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, load_specs

SPEC = """\
pipeline: web
cloud: local
image_type: base
os: debian-12
description: "<REPLACE: what the image is for>"   # a top-level key
milestones:
  5: {action: bootstrap}
  15: {action: command, command: [echo, "<REPLACE: the message>"]}
  100: {action: publish}
target:
  boot: {green_image: "<REPLACE: bios or uefi>"}
"""


def test_any_placeholder_refuses_the_spec_naming_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(SPEC)
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    assert str(refused.value) == (
        f"{path}: description: fill in what the image is for "
        "(also to fill in: milestones.15.command.1, target.boot.green_image)"
    )
    _, errors = load_specs([path])
    assert [str(e) for e in errors] == [str(refused.value)]


def test_a_filled_spec_loads_and_angle_brackets_alone_are_values(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    text = SPEC.replace('"<REPLACE: what the image is for>"', '"<html> base image"')
    text = text.replace('"<REPLACE: the message>"', "hello").replace('"<REPLACE: bios or uefi>"', "bios")
    path.write_text(text)
    assert load_spec(path).description == "<html> base image"
