"""Values for a tool, in a file only this user can read.

Variables given to Packer or Ansible may carry secrets (a database password for a playbook, a
client secret for a builder). On a command line they are visible to every local user in the
process list (``/proc/<pid>/cmdline``); in a 0600 file inside a 0700 temporary directory they
are not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def private_json(path: Path, values: Mapping[str, Any]) -> Path:
    """Write ``values`` as JSON to ``path`` (created new, mode 0600); returns ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(values), handle)
    return path
