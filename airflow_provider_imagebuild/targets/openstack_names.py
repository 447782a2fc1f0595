"""Every name Nova, Glance and Packer's ``openstack`` builder see for a build, in one place.

Nova takes server names of 1-255 printable characters that neither start nor end with whitespace
(``name`` in nova/api/validation/parameter_types.py, used by server create and ``createImage``), and
Glance image names of at most 255 characters (glance/api/v2/images.py). A pipeline name is at most
128 characters of ``[A-Za-z0-9._-]`` and fits whole, so every name starts with it (what a person
reads in Horizon or ``openstack server list``) and goes on with the build's digest, never the build
id itself: that is up to 128 characters too (a scheduled run's derived id is the pipeline again,
the run id and a hash), and two builds whose ids share a long start must not share names. The
digest is the first characters of the build's ownership key (``imagebuild_key``).
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.targets.base import build_digest, final_image_name

MAX_NAME = 255  # Nova server and snapshot names, Glance image names
KEY_LENGTH = 20  # imagebuild_key: the digest a build's servers and images carry
STEM_DIGEST = 10  # of the key, in names


def build_key(pipeline: str, build: BuildRecord) -> str:
    """The ownership key servers and images of the build carry (``imagebuild_key``)."""
    return build_digest(pipeline, build.build_id, KEY_LENGTH)


def checked(name: str, field: str = "name") -> str:
    """A name Nova and Glance take, or the error naming it (the names below fit by construction;
    this guards a pipeline or image name given in a spec)."""
    if not 1 <= len(name) <= MAX_NAME or name != name.strip() or not name.isprintable():
        raise InvalidInput(field, f"{name[:40]!r}... is not a Nova/Glance name (1-{MAX_NAME} printable characters)")
    return name


@dataclass(frozen=True)
class OpenstackNames:
    """The names of one build of one pipeline."""

    pipeline: str
    build: BuildRecord

    @property
    def key(self) -> str:
        return build_key(self.pipeline, self.build)

    @property
    def stem(self) -> str:
        """``<pipeline>-<digest>``: where every name of the build's servers and images starts."""
        return f"{self.pipeline}-{self.key[:STEM_DIGEST]}"

    def server(self, checkpoint: int) -> str:
        """A build server booted from the checkpoint after milestone ``checkpoint``."""
        return checked(f"{self.stem}-h{checkpoint:03d}")

    def test_server(self) -> str:
        """The launch test's server, booted from the sealed image."""
        return checked(f"{self.stem}-lt")

    def packer_image(self, milestone: int) -> str:
        """The image Packer's ``openstack`` builder makes at milestone ``milestone`` (its ``image_name``)."""
        return checked(f"{self.stem}-m{milestone:03d}")

    def checkpoint(self, milestone: int) -> str:
        """The snapshot taken after milestone ``milestone``."""
        return checked(f"{self.stem}-cp{milestone:03d}")

    def final(self) -> str:
        """The sealed image: ``<pipeline>-<created>-<key6>`` (stable on a retried seal)."""
        return checked(final_image_name(self.pipeline, self.build, self.key))

    def published(self, chosen: str | None, field: str) -> str:
        """A Glance destination's image: the spec's ``image_name``, else ``<pipeline>-<build id>``
        where it fits, else the build id cut to fit with the digest after it."""
        if chosen:
            return checked(chosen, field)
        name = f"{self.pipeline}-{self.build.build_id}"
        if len(name) <= MAX_NAME:
            return checked(name, field)
        room = MAX_NAME - len(self.pipeline) - STEM_DIGEST - 2
        return checked(f"{self.pipeline}-{self.build.build_id[:room]}-{self.key[:STEM_DIGEST]}", field)
