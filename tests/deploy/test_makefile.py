"""The Makefile works whether or not the project's venv is activated.

Many users work with ``source .venv/bin/activate``; the venv uv makes has neither pip nor uv, so
a Makefile that runs ``python3 -m uv`` picked up the venv's Python and every target failed at once
with ``No module named pip``. Real: ``make venv`` (the step every other target depends on) run in
this checkout with the environment ``activate`` sets; the locked environment is already in place,
so uv's sync is a no-op here.
"""

from __future__ import annotations

import os
import subprocess

from tests.servers.process import ROOT


def test_make_works_with_the_projects_venv_activated() -> None:
    venv = ROOT / ".venv"
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("MAKEFLAGS", None)
    got = subprocess.run(["make", "--no-print-directory", "venv"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    assert "No module named" not in got.stderr
