"""The shipped Ansible callback ``imagebuild`` records the milestones of tagged plays.

Real: ansible-runner running a playbook over chroot into a Debian root filesystem, the callback
loaded by Ansible from the installed package, the ``imagebuild`` CLI it calls, and SQLite. The
first run records 5 and 10 completed and 15 failed (its play fails); the second run, as an old
job re-run, leaves 5 and 10 alone (already completed) and completes 15.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars
from airflow_provider_imagebuild.toolchain.locate import tool_path
from tests.dags.conftest import write

PLAYBOOK = """
- name: Kickstart
  hosts: all
  tags: [m005, kickstart]
  gather_facts: false
  tasks:
    - name: A mark
      ansible.builtin.copy: {dest: /etc/imagebuild-m005, content: "5\\n", mode: "0644"}
- name: Green image
  hosts: all
  tags: [m010, green_image]
  gather_facts: false
  tasks:
    - name: A mark
      ansible.builtin.copy: {dest: /etc/imagebuild-m010, content: "10\\n", mode: "0644"}
- name: Base configuration
  hosts: all
  tags: [m015, base_config]
  gather_facts: false
  tasks:
    - name: Fails while the flag file exists
      ansible.builtin.stat: {path: /etc/imagebuild-break}
      register: flag
    - name: Break
      ansible.builtin.fail: {msg: "the base configuration broke"}
      when: flag.stat.exists
"""


@pytest.mark.slow
def test_tagged_plays_record_begin_complete_and_fail(tmp_path: Path, build_host_root: Path) -> None:
    import ansible_runner

    from airflow_provider_imagebuild.ansible_plugins import callback

    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.create_build("legacy-1", pipeline="legacy", cloud="local", image_type="base", plan=[0, 5, 10, 15, 100])
    write(tmp_path / "project/site.yml", PLAYBOOK)
    (build_host_root / "etc/imagebuild-break").write_text("")
    env = {
        "ANSIBLE_CALLBACK_PLUGINS": str(Path(callback.__file__).parent),
        "ANSIBLE_CALLBACKS_ENABLED": "imagebuild",
        "IMAGEBUILD_BUILD_ID": "legacy-1",
        "IMAGEBUILD_STORE": url,
        "IMAGEBUILD_OWNER": "ansible/nightly-job",
        "PATH": tool_path(),  # the callback finds the imagebuild CLI as the worker does
    }

    (tmp_path / "runner").mkdir()

    def run() -> str:
        result = ansible_runner.run(
            private_data_dir=str(tmp_path / "runner"), project_dir=str(tmp_path / "project"), playbook="site.yml",
            inventory={"all": {"hosts": {"buildhost": chroot_host_vars(build_host_root)}}}, envvars=env, quiet=True,
        )  # fmt: skip
        return str(result.status)

    assert run() == "failed"
    rec = store.get("legacy-1")
    assert rec.completed == [0, 5, 10] and (rec.current_state, rec.status) == (15, "failed")
    assert "the base configuration broke" in str(rec.attempts_at(15)[-1].error)
    assert {a.owner for a in rec.attempts if a.state in (5, 10, 15)} == {"ansible/nightly-job"}

    (build_host_root / "etc/imagebuild-break").unlink()
    assert run() == "successful"
    rec = store.get("legacy-1")
    assert rec.completed == [0, 5, 10, 15]
    assert [len(rec.attempts_at(code)) for code in (5, 10, 15)] == [1, 1, 2]  # 5 and 10 not begun again
