"""Every name and label a Google Cloud build gives Compute Engine or Packer, in one place.

Compute Engine names images, image families, instances and disks by RFC 1035:
``[a-z]([-a-z0-9]{0,61}[a-z0-9])?`` (``compute.v1.json``: ``Image.name``, ``Instance.name``, the
``image``/``instance`` path parameters; ``Image.family`` "must comply with RFC1035"), and Packer's
googlecompute refuses an ``image_name`` or ``image_family`` outside it before it starts. A boot
disk takes its instance's name (``AttachedDiskInitializeParams.diskName`` unset), Packer's too
(``disk_name`` defaults to ``instance_name``, which the shipped template sets to ``image_name``).

A build id may hold capitals, dots and underscores and be 128 characters long, a pipeline name
too: so names carry the build's digest (:func:`~airflow_provider_imagebuild.targets.base.build_digest`)
where they must be the build's own, and a readable part of the pipeline or family only where it
fits. The derivations of names already in use (hosts, checkpoints, Packer images, final images,
families) are unchanged, so a build that is retried after an upgrade finds what it made before.

Labels (Compute Engine's "Requirements for labels"): at most 64 per resource; keys 1-63 lowercase
letters, digits, ``_`` and ``-`` starting with a letter; values 0-63 of the same characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.targets.base import MANAGED_BY, build_digest, final_image_name

NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
MAX_NAME = 63
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}", re.ASCII)
MAX_LABELS = 64


def label_value(text: str) -> str:
    """``text`` as a label value (lowercase letters, digits, ``_``, ``-``; at most 63)."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def label_key(text: str) -> str:
    """``text`` as a label key: a label value that starts with a letter and is not empty."""
    value = label_value(text)
    return value if value[:1].isalpha() else f"k{value}"[:63]


def fit_labels(labels: Mapping[str, str], first: Mapping[str, str]) -> dict[str, str]:
    """``first`` (the labels that prove ownership: always kept) and then ``labels`` while there is
    room for them, at most :data:`MAX_LABELS`: Compute Engine refuses a 65th label."""
    found = dict(first)
    for key, value in labels.items():
        if len(found) >= MAX_LABELS:
            break
        found.setdefault(key, value)
    return found


def _name_part(text: str, room: int) -> str:
    """The readable start of a name: ``text`` lowercased, other characters as ``-``, at most
    ``room`` characters (a name may hold ``--``; it may not end with ``-``)."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower())[:room].rstrip("-")


def is_name(text: str) -> bool:
    return bool(NAME_RE.fullmatch(text))


# A description names the whole pipeline and the build, which labels cannot (lowercased, cut at 63):
# ``<pipeline> <build id> after milestone N`` (an image capture made), ``... build host`` (an instance).
_DESCRIPTION_RE = re.compile(r"(?P<pipeline>\S+) (?P<build>\S+) (?:after milestone [0-9]{1,3}|build host)")


def host_description(pipeline: str, build_id: str) -> str:
    return f"{pipeline} {build_id} build host"


class GcpNames:
    """The names of one pipeline's resources on Compute Engine (see the module's docstring)."""

    def __init__(self, pipeline: str, image_family: str | None) -> None:
        self.pipeline = pipeline
        self.image_family = image_family

    def key(self, build: BuildRecord) -> str:
        """The digest of the pipeline and build id: the ``imagebuild-key`` label and names' core."""
        return self.key_of(build.build_id)

    def key_of(self, build_id: str) -> str:
        """:meth:`key` of a build known by its id only (its record pruned)."""
        return build_digest(self.pipeline, build_id, 20)

    def described_build(self, resource: Mapping[str, Any], key: str) -> str:
        """The build id a resource's description names, when it names this whole pipeline and a
        build whose key ``key`` (its label) is; "" otherwise. What proves a resource of a build the
        store no longer has this pipeline's: its ``imagebuild-pipeline`` label is a lossy copy of
        the name (``Web.App`` and ``web_app`` read the same), the key a digest of the whole name."""
        found = _DESCRIPTION_RE.fullmatch(str(resource.get("description") or ""))
        if found is None or found["pipeline"] != self.pipeline or self.key_of(found["build"]) != key:
            return ""
        return found["build"]

    def prefix(self, build: BuildRecord) -> str:
        return f"ib-{self.key(build)[:10]}"

    def host(self, build: BuildRecord, checkpoint: int) -> str:
        """The build host launched from checkpoint ``checkpoint`` (and its boot disk)."""
        return f"{self.prefix(build)}-h{checkpoint:03d}"

    def test_host(self, build: BuildRecord) -> str:
        """The launch test's instance (and its boot disk): one per build at a time."""
        return f"{self.prefix(build)}-lt"

    def checkpoint(self, build: BuildRecord, milestone: int) -> str:
        return f"{self.prefix(build)}-cp{milestone:03d}"

    def packer_image(self, build: BuildRecord, milestone: int) -> str:
        """Packer's ``image_name`` (and its instance's and disk's): the pipeline where it fits, the
        build's digest and the milestone."""
        readable = re.sub(r"[^a-z0-9-]+", "-", self.pipeline.lower()).strip("-")[:40] or "image"
        if not readable[0].isalpha():
            readable = "i-" + readable[:38]
        return f"{readable}-{self.key(build)[:10]}-m{milestone:03d}"

    def family(self) -> str:
        """The final image's family: the spec's, else one derived from the pipeline."""
        return self.image_family or f"ib-{_name_part(label_value(self.pipeline), 40)}".rstrip("-")

    def staging_family(self) -> str:
        """The checkpoints' family, beside the final image's."""
        return f"{self.family()[:55]}-staging"

    def final_image(self, build: BuildRecord) -> str:
        """``<family>-<created>-<key6>``: the same for a retried seal, unique per build."""
        return final_image_name(self.family()[:40], build, self.key(build))

    def copy(self, build: BuildRecord, image: str, location: str) -> str:
        """The copy of the final image ``image`` in ``location``: the image's name where it fits,
        then the build's digest and the whole location, so that two locations of one long prefix
        (northamerica-northeast1 and -2) or two builds of one day never share a copy's name."""
        tail = f"{self.key(build)[:10]}-{_name_part(location, 30)}".rstrip("-")
        head = _name_part(image, MAX_NAME - len(tail) - 1)
        return f"{head or 'ib'}-{tail}"


def build_labels(names: GcpNames, build: BuildRecord, milestone: int, role: str,
                 user: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """The labels of everything the build makes: what proves it the build's (always kept), the
    spec's own, and what built it (``built-with-packer: 1_6_6``, as the seal recorded it) while
    there is room, never more than Compute Engine takes."""
    owned = {
        "imagebuild-key": names.key(build),
        "imagebuild-build": label_value(build.build_id),
        "imagebuild-pipeline": label_value(names.pipeline),
        "imagebuild-milestone": f"m{milestone:03d}",
        "imagebuild-role": role,
        "managed-by": MANAGED_BY,
    }
    tools = {
        label_key(f"built-with-{k.removeprefix('built_with.').replace('_', '-')}"): label_value(v)
        for k, v in sorted(build.metadata.items())
        if k.startswith("built_with.")
    }
    return fit_labels({**user, **tools}, owned)


def packer_labels(names: GcpNames, build: BuildRecord, milestone: int) -> dict[str, str]:
    """The labels the shipped template (and the tests' stand-in) write on Packer's image and
    instance, computed there from ``pipeline``, ``build_id`` and ``milestone``: what
    :meth:`GcpTarget.packer_artifacts` checks before it adopts or deletes an image of that name."""
    return {
        "imagebuild-key": names.key(build),
        "imagebuild-build": label_value(build.build_id),
        "imagebuild-pipeline": label_value(names.pipeline),
        "imagebuild-milestone": f"m{milestone:03d}",
        "imagebuild-role": "packer",
        "managed-by": MANAGED_BY,
    }
