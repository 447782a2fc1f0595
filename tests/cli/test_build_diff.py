"""``imagebuild build diff A B`` (#32) as a shell runs it: two builds of a pipeline whose
milestones recorded what they were made from (fingerprints computed from a real spec and real
files in a git checkout, recorded through the store), a playbook changed and committed between
them; the diff names the milestone, the file and the lines, and says the later ones changed only
through the chain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from airflow_provider_imagebuild.build.fingerprint import MilestoneFingerprint
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.build_domain.test_fingerprint import chain, checkout
from tests.cli.test_cli import run

PLAN = [0, 5, 15, 20, 95, 100]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _record(store: BuildStore, build_id: str, fps: dict[int, MilestoneFingerprint], upto: int) -> None:
    store.create_build(build_id, pipeline="fp-web", cloud="aws", image_type="web", os="rhel-8.10", plan=PLAN)
    for code in PLAN[1:]:
        if code > upto:
            return
        lease = store.begin(build_id, code, owner="w")
        store.complete(build_id, code, token=lease.token, fingerprint=fps[code].fingerprint, inputs=fps[code].inputs)


def test_diff_names_the_milestone_the_file_and_its_lines(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    spec_file = checkout(repo)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "v1")
    first = chain(spec_file)
    playbook = repo / "ansible" / "15-base.yml"
    playbook.write_text(playbook.read_text() + "    - ansible.builtin.debug: {msg: new}\n")
    _git(repo, "commit", "-q", "-am", "v2")
    second = chain(spec_file)
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    _record(store, "night-1", first, 100)
    _record(store, "night-2", second, 20)  # night 2 stops after 20: 95 and 100 are unknown

    shown = run("build", "diff", "night-1", "night-2", "--repo", str(repo), store=url)
    assert shown.returncode == 0, shown.stderr
    lines = [line.split("\t") for line in shown.stdout.splitlines() if " · " in line]
    rows = {line[0].split(" · ")[0]: line[1:] for line in lines}
    assert rows["5"] == ["same", ""]
    assert rows["15"] == ["changed", "file ../ansible/15-base.yml changed (+1 -0 lines)"]
    assert rows["20"] == ["changed", "an earlier milestone changed"]
    assert rows["95"][0] == rows["100"][0] == "unknown"

    as_json = run("build", "diff", "night-1", "night-2", "--json", store=url)  # no git here: ids only
    assert as_json.returncode == 0, as_json.stderr
    found = {m["code"]: m for m in json.loads(as_json.stdout)["milestones"]}
    [change] = [c for c in found[15]["changes"] if c["name"] != "previous"]
    assert change["kind"] == "file" and change["summary"] is None
    assert (change["before"], change["after"]) == (
        first[15].inputs["file:../ansible/15-base.yml"],
        second[15].inputs["file:../ansible/15-base.yml"],
    )
    assert found[5]["same"] and not found[95]["known"]


def test_diff_of_two_pipelines_builds_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    store.create_build("a-1", pipeline="web", cloud="aws", image_type="t", plan=[0, 5, 100])
    store.create_build("b-1", pipeline="db", cloud="aws", image_type="t", plan=[0, 5, 100])
    refused = run("build", "diff", "a-1", "b-1", store=url)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "AFTER" in refused.stderr and "pipeline db" in refused.stderr
    missing = run("build", "diff", "a-1", "nope", store=url)
    assert missing.returncode == 4, missing.stderr
