"""A shipped sample pipeline pointed at loopback: the same spec, template and playbooks, with the
store, the target's connection, the build host (a chroot tree) and what Packer runs changed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars


def localised(
    shipped: Path,
    store_url: str,
    build_host_root: Path,
    target: Mapping[str, Any],
    packer: Mapping[str, Any],
    standin: Path | None = None,
) -> str:
    """``shipped`` with ``target`` settings and ``packer`` keys (``vars``...) changed; with
    ``standin``, the Packer milestones run that template instead (``only`` renamed to its null
    sources), for clouds whose builder cannot reach a loopback endpoint."""
    spec: dict[str, Any] = yaml.safe_load(shipped.read_text())
    spec.update(store=store_url, schedule=None, defaults={"retries": 0, "lease_seconds": 60})
    spec["target"].update(target, connection=chroot_host_vars(build_host_root))
    for ms in spec["milestones"].values():
        for key in ("template", "playbook"):
            if key in ms:
                ms[key] = str((shipped.parent / ms[key]).resolve())
        if ms.get("action") == "packer":
            ms.update(packer)
            if standin is not None:
                ms["template"] = str(standin)
                ms["only"] = ["null." + o.partition(".")[2] for o in ms["only"]]
        ms.pop("retries", None)
        ms.pop("retry_delay", None)
    return yaml.safe_dump(offline_watches(spec))


# A closed loopback port: a watched repository there is refused at once (its value unavailable).
OFFLINE_REPOSITORY = "http://127.0.0.1:9"


def offline_watches(spec: dict[str, Any]) -> dict[str, Any]:
    """The sample's watched repositories (``watch:`` ``apt``/``yum``) moved to a closed loopback port:
    a test reaches no mirror on the internet, and each value reads as unavailable (#32)."""
    for ms in spec.get("milestones", {}).values():
        ms["watch"] = [
            {**w, kind: f"{OFFLINE_REPOSITORY}/{kind}/{w['name']}"} if kind in w else w
            for w in ms.get("watch", [])
            for kind in [next((k for k in ("apt", "yum") if k in w), "")]
        ]
    return spec


def launch_tested(spec_text: str, guest: Any | None) -> str:
    """A localised sample whose launch test (``action: launch_test``) reaches the stand-in guest
    (tests/servers/guest.py: ``target.boot.ssh_address``, its user and key), since the fakes'
    instances run nothing; without a guest (the benchmarks, which time resuming, not booting), the
    launch test is left out of the plan."""
    spec: dict[str, Any] = yaml.safe_load(spec_text)
    if guest is None:
        spec["milestones"] = {code: ms for code, ms in spec["milestones"].items() if ms.get("action") != "launch_test"}
    else:
        spec["target"]["boot"] = {**spec["target"].get("boot", {}), **guest.boot_settings(timeout=300)}
        spec["target"]["ssh_private_key_file"] = str(guest.key)
    return yaml.safe_dump(spec)
