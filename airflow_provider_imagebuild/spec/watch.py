"""A milestone's ``watch:`` entries: inputs that change without any file of the checkout changing.

::

    milestones:
      15:
        action: ansible
        playbook: ../ansible/15-base-config.yml
        watch:
          - {name: debian_mirror, apt: "http://deb.debian.org/debian/dists/bookworm/InRelease"}
          - {name: epel, yum: "https://dl.fedoraproject.org/pub/epel/8/Everything/x86_64/repodata/repomd.xml"}
          - {name: kernel_pin, command: [cat, /etc/imagebuild/kernel.pin], timeout: 20}
          - {name: base_image, image: source}

Each entry's current value enters the milestone's fingerprint (build/fingerprint.py): a package
repository that published new packages, a source image family that got a newer image, a pinned
version in a file outside the checkout. ``apt`` and ``yum`` take the SHA-256 of the repository's
``InRelease`` / ``repomd.xml`` (both change whenever the repository does); ``command`` its output
(an argv list run without a shell, with only ``PATH`` in its environment, so no secret of the
worker's reaches it; its output bounded and cut off at ``timeout``); ``image: source`` the id the
target's source image resolves to now (an AMI id for a name, the newest image of a family).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WATCH_KINDS = ("command", "apt", "yum", "image")
MAX_WATCH_TIMEOUT = 300


class WatchSpec(BaseModel):
    """One watched external input of a milestone: exactly one of ``command``, ``apt``, ``yum``, ``image``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="how the diff and the failure notice name it (lowercase letters, digits, '_')")
    command: list[str] | None = Field(
        default=None, description="an argv list (no shell) whose output is watched; run with only PATH set"
    )
    apt: str | None = Field(default=None, description="an apt repository's InRelease URL (http or https)")
    yum: str | None = Field(default=None, description="a yum/dnf repository's repodata/repomd.xml URL (http or https)")
    image: Literal["source"] | None = Field(
        default=None, description="'source': the id the target's source image (name or family) resolves to now"
    )
    timeout: float = Field(default=30, gt=0, le=MAX_WATCH_TIMEOUT, description="seconds before the value is given up")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", value):
            raise ValueError("must be lowercase letters, digits and '_' (at most 40), starting with a letter")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(isinstance(v, str) and v for v in value)):
            raise ValueError("must be a non-empty argv list of non-empty strings (no shell)")
        return value

    @field_validator("apt", "yum")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            if not re.fullmatch(r"https?://[^\s@/]+(/[^\s]*)?", value):
                raise ValueError("must be an http:// or https:// URL without credentials")
            if len(value) > 2000:
                raise ValueError("is longer than 2000 characters")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> WatchSpec:
        given = [kind for kind in WATCH_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(WATCH_KINDS)} (given: {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in WATCH_KINDS if getattr(self, kind) is not None)


MAX_WATCHES = 20  # per milestone: each is read when it starts, for up to its timeout


def watch_problem(entries: list[WatchSpec]) -> str | None:
    """A milestone's watch list names each entry once, and holds at most :data:`MAX_WATCHES`."""
    if len(entries) > MAX_WATCHES:
        return f"watch: lists {len(entries)} entries; a milestone watches at most {MAX_WATCHES}"
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            return f"watch: {entry.name!r} is named twice"
        seen.add(entry.name)
    return None
