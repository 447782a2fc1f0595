"""Milestone fingerprints (#32) computed from a real spec and real files, no build: the same
checkout at two paths gives the same chain; any one input changed gives another fingerprint at
that milestone, and the recorded inputs name what changed."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from airflow_provider_imagebuild.build.file_uses import playbook_files
from airflow_provider_imagebuild.build.fingerprint import MAX_INPUTS, MilestoneFingerprint, changed_inputs
from airflow_provider_imagebuild.fingerprints import pipeline_fingerprints
from airflow_provider_imagebuild.spec.pipeline import load_spec
from tests.dags.conftest import write

SPEC = """
pipeline: fp-web
cloud: aws
image_type: web
os: rhel-8.10
target: {region: us-east-1, source_image: ami-0123456789abcdef0}
checkpoints: [20]
milestones:
  5:  {action: packer, template: ../packer/web.pkr.hcl, var_files: [../packer/web.pkrvars.hcl], vars: {disk: "20"}}
  15:
    action: ansible
    playbook: ../ansible/15-base.yml
    extravars: {http_port: 8080}
    watch:
      - {name: baseos, yum: "http://127.0.0.1:9/repodata/repomd.xml"}
  20: {action: ansible, playbook: ../ansible/20-web.yml, retries: 1}
  95: {action: seal}
  100: {action: publish}
"""

FILES = {
    "packer/web.pkr.hcl": 'source "amazon-ebs" "green" {\n  user_data = file("${path.root}/user-data")\n}\n',
    "packer/web.pkrvars.hcl": 'disk = "20"\n',
    "packer/user-data": "#cloud-config\n",
    "ansible/15-base.yml": (
        "- hosts: all\n  tasks:\n"
        "    - ansible.builtin.import_tasks: family.yml\n"
        "    - ansible.builtin.template: {src: motd.j2, dest: /etc/motd}\n"
    ),
    "ansible/family.yml": '- ansible.builtin.include_vars: "vars/{{ ansible_os_family }}.yml"\n',
    "ansible/vars/RedHat.yml": "base_packages: [vim]\n",
    "ansible/vars/Debian.yml": "base_packages: [vim-tiny]\n",
    "ansible/templates/motd.j2": "Golden image\r\n",  # CRLF as stored
    "ansible/20-web.yml": "- hosts: all\n  roles: [web]\n",
    "ansible/roles/web/tasks/main.yml": "- ansible.builtin.copy: {src: index.html, dest: /srv/index.html}\n",
    "ansible/roles/web/files/index.html": "<h1>hi</h1>\n",
    "ansible/roles/web/meta/main.yml": "dependencies: [common]\n",
    "ansible/roles/common/tasks/main.yml": "- ansible.builtin.debug: {msg: common}\n",
    "ansible/group_vars/all.yml": "ntp: pool.ntp.org\n",
    "ansible/unrelated.yml": "- hosts: all\n",
}
TOOLS = {"ansible-core": "2.19.14", "ansible": "12.3.0", "packer": "1.16.0", "provider": "0.1.0"}
WATCHED = {15: {"baseos": "sha256:aaaa"}}


def checkout(root: Path) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    return write(root / "pipelines" / "web.yaml", SPEC)


def chain(
    spec_file: Path,
    watched: Mapping[int, Mapping[str, str]] = WATCHED,
    tools: Mapping[str, str] = TOOLS,
) -> dict[int, MilestoneFingerprint]:
    spec = load_spec(spec_file)
    codes = [5, 15, 20, 95, 100]
    return pipeline_fingerprints(spec, spec_file.parent, codes, watched=watched, tools=tools)


def test_the_same_checkout_at_two_paths_gives_the_same_chain(tmp_path: Path) -> None:
    one = chain(checkout(tmp_path / "alice" / "src"))
    two = chain(checkout(tmp_path / "ci" / "workspace" / "deep" / "checkout"))
    assert {c: f.fingerprint for c, f in one.items()} == {c: f.fingerprint for c, f in two.items()}
    assert one[15].inputs == two[15].inputs
    recorded = " ".join(name for fp in one.values() for name in fp.inputs)
    assert str(tmp_path) not in recorded  # relative names, never the checkout's path
    assert one[20].inputs["previous"] == one[15].fingerprint  # a chain


def _edit(rel: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(text.encode())


def _spec(old: str, new: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / "pipelines" / "web.yaml"
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))

    return change


# (what changes, the first milestone it changes, the input the diff names there)
CHANGES = [
    ("playbook", _edit("ansible/15-base.yml", FILES["ansible/15-base.yml"] + "\n"), 15, "file:../ansible/15-base.yml"),
    ("imported tasks", _edit("ansible/family.yml", "- debug: {}\n"), 15, "file:../ansible/family.yml"),
    ("vars of a dynamic include", _edit("ansible/vars/Debian.yml", "x: 1\n"), 15, "file:../ansible/vars/Debian.yml"),
    ("template", _edit("ansible/templates/motd.j2", "Golden image\n"), 15, "file:../ansible/templates/motd.j2"),
    ("group_vars", _edit("ansible/group_vars/all.yml", "ntp: x\n"), 15, "file:../ansible/group_vars/all.yml"),
    ("role file", _edit("ansible/roles/web/files/index.html", "x"), 20, "file:../ansible/roles/web/files/index.html"),
    (
        "dependency role",
        _edit("ansible/roles/common/tasks/main.yml", "[]\n"),
        20,
        "file:../ansible/roles/common/tasks/main.yml",
    ),
    (
        "packer template",
        _edit("packer/web.pkr.hcl", FILES["packer/web.pkr.hcl"] + "#\n"),
        5,
        "file:../packer/web.pkr.hcl",
    ),
    ("file() of the template", _edit("packer/user-data", "#cloud-config\nx: 1\n"), 5, "file:../packer/user-data"),
    ("var file", _edit("packer/web.pkrvars.hcl", 'disk = "30"\n'), 5, "file:../packer/web.pkrvars.hcl"),
    ("packer variable", _spec('disk: "20"', 'disk: "30"'), 5, "var:disk"),
    ("extra variable", _spec("http_port: 8080", "http_port: 8081"), 15, "var:http_port"),
    ("source image", _spec("ami-0123456789abcdef0", "ami-0fedcba9876543210"), 5, "source_image"),
    ("target setting", _spec("region: us-east-1", "region: us-east-2"), 5, "target"),
    ("spec entry", _spec("{action: seal}", "{action: seal, playbook: ../ansible/unrelated.yml}"), 95, "spec"),
]


@pytest.mark.parametrize(("what", "change", "first", "named"), CHANGES, ids=[c[0] for c in CHANGES])
def test_any_one_input_changed_changes_the_fingerprint_and_is_named(
    tmp_path: Path, what: str, change: Callable[[Path], None], first: int, named: str
) -> None:
    root = tmp_path / "checkout"
    before = chain(checkout(root))
    change(root)
    after = chain(root / "pipelines" / "web.yaml")
    codes = sorted(before)
    for code in codes:
        old, new = before[code], after[code]
        if code < first:
            assert old.fingerprint == new.fingerprint, f"{what} changed milestone {code}"
        else:
            assert old.fingerprint != new.fingerprint, f"{what} left milestone {code} unchanged"
    names = [c.name for c in changed_inputs(before[first].inputs, after[first].inputs)]
    assert named in names and "previous" not in names, names
    later = [c.name for c in changed_inputs(before[100].inputs, after[100].inputs)]
    assert later == ["previous"]  # a later milestone changed only through the chain


def test_watched_values_and_tool_versions_enter_only_their_milestones(tmp_path: Path) -> None:
    spec_file = checkout(tmp_path)
    base = chain(spec_file)
    watched = chain(spec_file, watched={15: {"baseos": "sha256:bbbb"}})
    assert base[5].fingerprint == watched[5].fingerprint
    assert [c.name for c in changed_inputs(base[15].inputs, watched[15].inputs)] == ["watch:baseos"]
    newer = chain(spec_file, tools={**TOOLS, "ansible-core": "2.20.0"})
    assert base[5].fingerprint == newer[5].fingerprint  # packer milestones do not run Ansible
    change = changed_inputs(base[15].inputs, newer[15].inputs)
    assert [(c.name, c.before, c.after) for c in change] == [("tool:ansible-core", "2.19.14", "2.20.0")]


def test_how_a_milestone_runs_is_not_what_it_makes(tmp_path: Path) -> None:
    spec_file = checkout(tmp_path)
    before = chain(spec_file)
    spec_file.write_text(spec_file.read_text().replace("retries: 1", "retries: 5, execution_timeout: 2h"))
    assert chain(spec_file)[20].fingerprint == before[20].fingerprint


def test_a_variable_is_recorded_by_digest_and_a_secret_one_not_even_so(tmp_path: Path) -> None:
    from airflow_provider_imagebuild.build.changes import build_diff, describe
    from airflow_provider_imagebuild.store import open_store

    spec_file = checkout(tmp_path)
    spec_file.write_text(spec_file.read_text().replace("http_port: 8080", "http_port: 8080, db_password: hunter2"))
    before = chain(spec_file)[15]
    assert len(before.inputs["var:http_port"]) == 16 and before.inputs["var:db_password"] == "secret"
    spec_file.write_text(spec_file.read_text().replace("hunter2", "hunter3"))
    after = chain(spec_file)[15]
    assert after.fingerprint != before.fingerprint and after.inputs == {**before.inputs}
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    for build_id, fp in (("a", before), ("b", after)):
        store.create_build(build_id, pipeline="fp-web", cloud="aws", image_type="web", plan=[0, 15, 100])
        lease = store.begin(build_id, 15, owner="w")
        store.complete(build_id, 15, token=lease.token, fingerprint=fp.fingerprint, inputs=fp.inputs)
    [diff] = [d for d in build_diff(store.get("a"), store.get("b")) if d.code == 15]
    assert [describe(c) for c in diff.own_changes] == [
        "variable db_password may have changed (a secret: recorded without its digest)"
    ]
    assert "hunter" not in str(store.get("b").to_public())


def test_what_a_playbook_uses_is_followed_and_what_is_not_is_said(tmp_path: Path) -> None:
    checkout(tmp_path)
    files, uncovered = playbook_files(tmp_path / "ansible" / "15-base.yml")
    names = sorted(p.relative_to(tmp_path / "ansible").as_posix() for p in files)
    assert names == [
        "15-base.yml",
        "family.yml",
        "group_vars/all.yml",
        "templates/motd.j2",
        "vars/Debian.yml",
        "vars/RedHat.yml",
    ]
    assert uncovered == ["include_vars 'vars/{{ ansible_os_family }}.yml': every file under vars/ counts"]
    (tmp_path / "ansible" / "vars" / "stolen.yml").symlink_to("/etc/hostname")  # a link out of vars/
    assert [p.name for p in playbook_files(tmp_path / "ansible" / "15-base.yml")[0]] == [p.name for p in files]


def test_a_role_tree_past_the_record_limit_is_folded_into_folders(tmp_path: Path) -> None:
    spec_file = checkout(tmp_path)
    for i in range(MAX_INPUTS + 50):
        write(tmp_path / "ansible" / "roles" / "web" / "templates" / f"t{i}.j2", str(i))
    one = chain(spec_file)[20]
    (tmp_path / "ansible" / "roles" / "web" / "templates" / "t7.j2").write_text("changed")
    two = chain(spec_file)[20]
    assert len(one.inputs) <= MAX_INPUTS + 1
    assert one.fingerprint != two.fingerprint
    assert [c.name for c in changed_inputs(one.inputs, two.inputs)] == ["folder:../ansible/roles/web/templates"]


def test_a_copied_checkout_is_the_same_even_with_other_mtimes(tmp_path: Path) -> None:
    spec_file = checkout(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # copytree keeps content, not necessarily times
    import os

    os.utime(tmp_path / "b" / "ansible" / "15-base.yml", (1, 1))
    one, two = chain(spec_file), chain(tmp_path / "b" / "pipelines" / "web.yaml")
    assert one[100].fingerprint == two[100].fingerprint


def test_a_templated_name_under_a_huge_folder_stops_at_the_bound(tmp_path: Path) -> None:
    """``include_vars: /usr/{{ x }}/main.yml`` counts every file under /usr: the walk stops at the
    file bound, naming it. (How fast it stops is benchmarks/fingerprint_bench.py's to show: a
    wall-clock bound here failed on a loaded CI machine.)"""
    (tmp_path / "site.yml").write_text('- hosts: all\n  tasks:\n    - include_vars: "/usr/{{ x }}/main.yml"\n')
    with pytest.raises(ValueError, match="/usr holds more than 5000 files"):
        playbook_files(tmp_path / "site.yml")


def test_the_debootstrap_version_enters_the_local_bootstrap_only(tmp_path: Path) -> None:
    """The local target's milestone 5 runs debootstrap: another version may make another base tree."""
    spec_file = write(tmp_path / "local.yaml", "pipeline: p\ncloud: local\nimage_type: base\n"
                      "milestones:\n  5: {action: bootstrap}\n  10: {action: noop}\n")  # fmt: skip
    spec = load_spec(spec_file)
    before = pipeline_fingerprints(spec, tmp_path, [5, 10], tools={**TOOLS, "debootstrap": "1.0.128"})
    after = pipeline_fingerprints(spec, tmp_path, [5, 10], tools={**TOOLS, "debootstrap": "1.0.134"})
    change = changed_inputs(before[5].inputs, after[5].inputs)
    assert [(c.name, c.before, c.after) for c in change] == [("tool:debootstrap", "1.0.128", "1.0.134")]
    assert [c.name for c in changed_inputs(before[10].inputs, after[10].inputs)] == ["previous"]
