"""``imagebuild report`` and ``build list`` read, with ``--specs FOLDER``, every store the
deployment's specs name, as the Image builds pages do: a spec with its own ``store:`` is counted,
and each listed build says which store it lives in. Real SQLite stores, the CLI in a process of
its own per command (as a shell runs it)."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_imagebuild.store import open_store
from tests.cli.test_store_choice_cli import imagebuild

SPEC = """pipeline: {name}
cloud: local
image_type: base
milestones:
  15: {{action: command, command: "true"}}
"""


def test_report_and_list_read_every_store_the_specs_name(tmp_path: Path) -> None:
    shared_url, own_url = f"sqlite:///{tmp_path}/shared.db", f"sqlite:///{tmp_path}/own.db"
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "shared.yaml").write_text(SPEC.format(name="shared"))
    (folder / "own.yaml").write_text(SPEC.format(name="own") + f"store: {own_url}\n")
    for url, build_id, pipeline in ((shared_url, "shared-1", "shared"), (own_url, "own-1", "own")):
        open_store(url).create_build(build_id, pipeline=pipeline, cloud="local", image_type="base", plan=[0, 15, 100])
    env = {"IMAGEBUILD_STORE": shared_url, "AIRFLOW_HOME": str(tmp_path / "home")}

    listed = imagebuild("build", "list", "--specs", str(folder), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    where = {b["build_id"]: b["store"] for b in json.loads(listed.stdout)}
    assert where == {"shared-1": open_store(shared_url).url, "own-1": own_url}

    reported = imagebuild("report", "--specs", str(folder), "--json", env=env)
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)
    assert report["builds"] == 2 and report["unreadable_stores"] == []
    assert len(report["stores"]) == 2

    one = json.loads(imagebuild("report", "--json", env=env).stdout)  # without --specs: the one store
    assert one["builds"] == 1


def test_specs_is_a_folder_and_not_with_a_named_store(tmp_path: Path) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path / "home")}
    missing = imagebuild("report", "--specs", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 2 and "--specs" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "pipelines").mkdir()
    both = imagebuild("--store", f"sqlite:///{tmp_path}/x.db", "build", "list", "--specs", str(tmp_path / "pipelines"),
                      env=env)  # fmt: skip
    assert both.returncode == 2 and "--specs" in both.stderr
    assert not (tmp_path / "x.db").exists()  # nothing written
