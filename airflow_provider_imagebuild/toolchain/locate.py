"""Where the tools a milestone runs are found.

A worker runs the provider from a virtual environment more often than not, and the tools that
come with the provider's Python packages (``ansible-playbook`` from ``ansible``, this provider's
own ``imagebuild`` CLI) live in that environment's ``bin/``, beside ``sys.executable``. That
folder is on ``PATH`` only when someone activated the environment; Airflow's workers, a systemd
unit or ``.venv/bin/python -m pytest`` do not. So every tool is looked up next to the
interpreter first, then in ``$IMAGEBUILD_TOOLS_DIR`` (where a deployment keeps Packer and its
plugins built outside any package), then on ``PATH``, then in the system's ``sbin`` folders
(``debootstrap`` lives in ``/usr/sbin``, which a non-login shell may not list). The same order
is what child processes get as their ``PATH``, so that ansible-runner finds ``ansible-playbook``
and the Ansible callback finds ``imagebuild`` the way the worker itself does.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

TOOLS_DIR_ENV = "IMAGEBUILD_TOOLS_DIR"
SYSTEM_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def interpreter_bin() -> str:
    """The folder of the running interpreter's scripts (a venv's ``bin/``). Not resolved: a
    venv's ``python`` is a symlink to the base interpreter, whose folder holds no venv scripts."""
    return str(Path(sys.executable).parent)


def tool_dirs(environ: Mapping[str, str] | None = None) -> list[str]:
    """The folders searched for a tool, in order, without duplicates."""
    env = os.environ if environ is None else environ
    found: list[str] = []
    candidates = [interpreter_bin(), env.get(TOOLS_DIR_ENV, ""), *env.get("PATH", "").split(os.pathsep), *SYSTEM_SBIN]
    for folder in candidates:
        if folder and folder not in found:
            found.append(folder)
    return found


def tool_path(environ: Mapping[str, str] | None = None) -> str:
    """``PATH`` for a child process: the tool folders in lookup order."""
    return os.pathsep.join(tool_dirs(environ))


def find_tool(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The executable ``name`` as the provider runs it, or None when it is nowhere."""
    return shutil.which(name, path=tool_path(environ))
