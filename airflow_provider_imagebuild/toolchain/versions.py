"""What built an image: the versions of Packer, Ansible, ansible-core and this provider on the
worker, recorded in the build's metadata at the seal and carried into what is published (the local
catalog's ``metadata.json``), so that a consumer can tell which toolchain made an image and a
regression can be traced to a tool upgrade."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from importlib import metadata

from airflow_provider_imagebuild.toolchain.locate import find_tool
from airflow_provider_imagebuild.toolchain.packer import plugin_env


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def packer_version() -> str | None:
    packer = find_tool("packer")
    if packer is None:
        return None
    try:
        env = {**os.environ, **plugin_env(packer), "CHECKPOINT_DISABLE": "1"}  # no update check over the network
        out = subprocess.run(
            [packer, "version"], capture_output=True, text=True, timeout=30, check=False, env=env
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"Packer v?([0-9][0-9A-Za-z.+-]*)", out)
    return found[1] if found else None


@functools.cache
def debootstrap_version() -> str | None:
    """The installed debootstrap's Debian package version (what the local target's milestone 5 runs
    to make its base tree; a new one may make another tree); None where it is not installed."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "debootstrap"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = out.stdout.strip()
    return version if out.returncode == 0 and re.fullmatch(r"[0-9A-Za-z.+~:-]{1,64}", version) else None


def tool_versions() -> dict[str, str]:
    """``built_with.<tool>`` metadata: only what is installed here."""
    found = {
        "built_with.packer": packer_version(),
        "built_with.ansible": _package("ansible"),
        "built_with.ansible_core": _package("ansible-core"),
        "built_with.provider": _package("airflow-provider-imagebuild"),
    }
    return {key: value for key, value in found.items() if value}
