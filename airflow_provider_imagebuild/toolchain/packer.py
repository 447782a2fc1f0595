"""Packer's machine-readable output, its manifest, and one ``packer build`` run.

``packer build -machine-readable`` prints ``timestamp,target,type,data...`` with commas inside
data escaped as ``%!(PACKER_COMMA)`` and newlines as ``\\n``. UI lines go to the task log decoded;
``artifact`` lines give the images this run made; ``ui,error`` lines are what a failure is
recorded with (not "exit status 1"). The manifest post-processor appends one entry per build
across runs, so only entries of ``last_run_uuid`` belong to this run.

Packer 1.10 and later carry no builders: each cloud's builder is a plugin binary, found in
``$PACKER_PLUGIN_PATH`` or else in the ``~/.config/packer/plugins`` of whoever runs it. A worker's
plugins belong with the Packer they were installed for, not with a user's home: they sit in a
``plugins`` folder beside the real Packer binary (what ``make packer-tools`` builds, and what a
deployment puts in ``$IMAGEBUILD_TOOLS_DIR``), and every run of Packer gets that folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.toolchain.process import ChildProcess

PLUGIN_PATH_ENV = "PACKER_PLUGIN_PATH"
PLUGINS_DIR = "plugins"  # beside the real Packer binary: the plugins installed for it
PACKER_GRACE_S = 60.0  # Packer deletes its instance, key pair and security group after SIGINT
INSTANCE_RE = re.compile(r"\bInstance ID: (i-[0-9a-f]+)")  # amazon-ebs names the instance it launched


def plugin_env(packer: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``PACKER_PLUGIN_PATH`` for a run of ``packer``: the ``plugins`` folder beside the real
    binary (a link such as the venv's ``bin/packer`` resolved to the cached build it points at).
    Without it Packer looks only in the running user's home, where a worker's plugins are not, and
    stops at "Missing plugins" for every template with ``required_plugins``. A
    ``PACKER_PLUGIN_PATH`` already in ``environ`` wins (the operator chose); a Packer with no such
    folder (Debian's 1.6.6, builders built in) gets nothing."""
    env = os.environ if environ is None else environ
    if env.get(PLUGIN_PATH_ENV):
        return {}
    folder = Path(packer).resolve().parent / PLUGINS_DIR
    return {PLUGIN_PATH_ENV: str(folder)} if folder.is_dir() else {}


def decode(data: str) -> str:
    """A machine-readable data field as Packer meant it."""
    return data.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")


@dataclass(frozen=True)
class MachineLine:
    timestamp: str
    target: str
    type: str
    data: tuple[str, ...]

    @property
    def text(self) -> str:
        return decode(",".join(self.data))


def parse_line(line: str) -> MachineLine | None:
    """One machine-readable line, or None for lines that are not (Packer plugins may print raw)."""
    parts = line.split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return MachineLine(parts[0], parts[1], parts[2], tuple(parts[3:]))


@dataclass
class Artifact:
    builder: str
    index: int
    builder_id: str = ""
    id: str = ""
    description: str = ""

    def images(self) -> dict[str, str]:
        """``us-east-1:ami-1,eu-west-1:ami-2`` -> {region: image}; a plain id maps to ``""``."""
        found: dict[str, str] = {}
        for item in filter(None, self.id.split(",")):
            region, sep, image = item.partition(":")
            if not sep or not region or not image:
                found.setdefault("", item)
            else:
                found[region] = image
        return found


def parse_artifacts(lines: Iterable[MachineLine]) -> list[Artifact]:
    """Artifacts from ``target,artifact,N,field,value`` lines; a malformed one is an error naming it."""
    artifacts: dict[tuple[str, int], Artifact] = {}
    for ml in lines:
        if ml.type != "artifact":
            continue
        if len(ml.data) < 2 or not ml.data[0].isdigit():
            raise InvalidInput("packer artifact", f"malformed artifact line: {ml.target},artifact,{','.join(ml.data)}")
        index, name = int(ml.data[0]), ml.data[1]
        value = decode(",".join(ml.data[2:]))
        art = artifacts.setdefault((ml.target, index), Artifact(ml.target, index))
        if name == "builder-id":
            art.builder_id = value
        elif name == "id":
            art.id = value
        elif name == "string":
            art.description = value
    return list(artifacts.values())


def manifest_images(path: Path) -> dict[str, str]:
    """Images of the last run recorded in a manifest file (region -> image id)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput("manifest", f"{path} cannot be read as a Packer manifest: {exc}") from None
    run = doc.get("last_run_uuid")
    images: dict[str, str] = {}
    for entry in doc.get("builds", []):
        if entry.get("packer_run_uuid") == run:
            images.update(Artifact(entry.get("name", ""), 0, id=entry.get("artifact_id", "")).images())
    return images


@dataclass
class PackerResult:
    code: int
    artifacts: list[Artifact]
    errors: list[str]
    tail: list[str] = field(default_factory=list)
    manifest: dict[str, str] = field(default_factory=dict)  # region -> image, this run's manifest entries
    instances: list[str] = field(default_factory=list)  # instances Packer said it launched

    def images(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for art in self.artifacts:
            found.update(art.images())
        return found


class PackerRun:
    """``packer build -machine-readable`` of one template, with its UI streamed to ``log``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        log: Callable[[str], None],
        grace_s: float = PACKER_GRACE_S,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log = log
        self.grace_s = grace_s
        self.child: ChildProcess | None = None

    def run(self) -> PackerResult:
        child = self.child = ChildProcess(
            self.argv, env=self.env, cwd=self.cwd, stop_signal=signal.SIGINT, grace_s=self.grace_s
        )
        parsed: list[MachineLine] = []
        errors: list[str] = []
        instances: list[str] = []
        tail: deque[str] = deque(maxlen=20)
        for line in child.lines():
            ml = parse_line(line)
            if ml is None:
                tail.append(line)
                self.log(line)
                continue
            parsed.append(ml)
            if ml.type == "ui" and ml.data:
                text = decode(",".join(ml.data[1:])).rstrip()
                tail.append(text)
                self.log(text)
                if ml.data[0] == "error":
                    errors.append(text)
                instances += INSTANCE_RE.findall(text)
        code = child.wait()
        if child.strays:
            self.log(f"killed {len(child.strays)} process(es) Packer left running: {child.strays}")
        return PackerResult(code, parse_artifacts(parsed), errors, list(tail), instances=instances)

    def stop(self, reason: str) -> None:
        if self.child is not None:
            self.child.stop(reason)
