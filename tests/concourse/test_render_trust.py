"""What a spec can put into a rendered Concourse pipeline: structured YAML only, and never a
``((var))`` of its own (Concourse fills those from the team's credential manager, so a spec that
could write one could send a team secret wherever its text goes).

Real: ``imagebuild concourse render`` in a subprocess, spec files on disk, PyYAML reading the
result back as Concourse's ``fly set-pipeline`` would.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from airflow_provider_imagebuild.concourse.render import check_interpolation, render_pipeline, render_yaml
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.pipeline import load_spec
from tests.concourse.runner import search_path
from tests.dags.conftest import write

SPEC = "pipeline: p\ncloud: local\nimage_type: t\nmilestones: {5: {action: command, command: 'true'}}\n"
TOP_LEVEL = {"resource_types", "resources", "jobs"}
OUR_VARS = {
    "build_id",
    "imagebuild_image",
    "imagebuild_tag",
    "source_uri",
    "source_branch",
    "source_key",
    "imagebuild_store",
}


def render(spec_path: Path, repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["imagebuild", "concourse", "render", str(spec_path), "--repo-root", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": search_path(), "HOME": str(repo)},
    )


def one_line_error(got: subprocess.CompletedProcess[str], *words: str) -> None:
    assert got.returncode == 2, (got.returncode, got.stdout, got.stderr)
    assert "Traceback" not in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr
    assert not got.stdout.strip()
    for word in words:
        assert word in got.stderr, (word, got.stderr)


def test_a_store_url_cannot_bring_a_credential_var(tmp_path: Path) -> None:
    """``((team_secret))`` in the store's prefix would be filled by Concourse and sent to the
    spec's endpoint: the render refuses it, naming the field."""
    spec = SPEC + "store: s3://bkt/((team_secret))?region=us-east-1&endpoint_url=https://collector.example\n"
    spec_path = write(tmp_path / "repo/pipelines/p.yaml", spec)
    load_spec(spec_path)  # a valid spec: the store URL parses
    one_line_error(render(spec_path, tmp_path / "repo"), "store", "((")


@pytest.mark.parametrize(
    "where",
    ["pipelines/((team_secret)).yaml", "((team_secret))/p.yaml", "pipelines/a((b.yaml"],
)
def test_a_spec_path_cannot_bring_a_credential_var(where: str, tmp_path: Path) -> None:
    spec_path = write(tmp_path / "repo" / where, SPEC)
    got = render(spec_path, tmp_path / "repo")
    one_line_error(got, "((")
    assert "spec" in got.stderr


@pytest.mark.parametrize(
    "name",
    [
        "p.yaml\nvar_sources: [{name: v, type: dummy, config: {vars: {team_secret: x}}}]\n#",
        "p\rx.yaml",
        "p\u2028x.yaml",
    ],
    ids=["newline", "carriage-return", "line-separator"],
)
def test_a_spec_file_name_cannot_add_keys(name: str, tmp_path: Path) -> None:
    """A file name with a line break used to end the header comment and add top-level keys
    (``var_sources:`` pointing anywhere). Such a name is refused, naming it as the spec's file name."""
    spec_path = write(tmp_path / "repo/pipelines" / name, SPEC)
    got = render(spec_path, tmp_path / "repo")
    one_line_error(got, "spec's file name", "control character")


def test_the_header_carries_no_spec_text(tmp_path: Path) -> None:
    """The header is fixed text: no file name, no pipeline name, nothing a spec wrote."""
    spec_path = write(tmp_path / "repo/pipelines/#x: y - z.yaml", SPEC.replace("pipeline: p", "pipeline: zq-pipe"))
    text = render_yaml(load_spec(spec_path), spec_path, tmp_path / "repo")
    header = text[: text.index("resource_types:")]
    assert all(line.startswith("#") for line in header.splitlines())
    assert "#x: y" not in header and "zq-pipe" not in header
    config = yaml.safe_load(text)
    assert set(config) == TOP_LEVEL
    assert set(re.findall(r"\(\(([^)]*)\)\)", text)) <= OUR_VARS


def test_every_var_in_a_render_is_one_of_ours(tmp_path: Path) -> None:
    """Defence in depth for fields added later: the last walk over a finished config refuses any
    ``((`` or ``{{`` that is not a whole var the renderer wrote, naming where it is."""
    spec_path = write(tmp_path / "repo/pipelines/p.yaml", SPEC)
    config = render_pipeline(load_spec(spec_path), spec_path, tmp_path / "repo")
    check_interpolation(config)  # the renderer's own vars pass
    for planted in ("((team_secret))", "x ((build_id))", "((connection_x)) y", "{{team_secret}}", "((SOURCE_KEY))"):
        params = config["jobs"][0]["plan"][1]["config"]["params"]
        params["PLANTED"] = planted
        with pytest.raises(InvalidInput) as caught:
            check_interpolation(config)
        assert caught.value.field.endswith("config.params.PLANTED"), caught.value.field
        params[planted] = "x"
        del params["PLANTED"]
        with pytest.raises(InvalidInput, match="a key"):
            check_interpolation(config)
        del params[planted]


def test_a_store_url_with_an_old_style_template_is_refused(tmp_path: Path) -> None:
    spec_path = write(tmp_path / "repo/pipelines/p.yaml", SPEC + "store: sqlite:///tmp/{{team_secret}}.db\n")
    with pytest.raises(InvalidInput) as caught:
        render_yaml(load_spec(spec_path), spec_path, tmp_path / "repo")
    assert caught.value.field == "store" and "{{" in caught.value.reason
