"""Whether the data Glance stored is the image file that went up, whatever format Glance keeps it in.

Glance computes ``checksum`` (MD5) and ``os_hash_value`` (with ``os_hash_algo``: SHA-512 unless the
operator set another ``hashing_algorithm``) of the data as it writes it to its store
(glance/location.py ``_upload_to_store``). With the interoperable import's ``image_conversion``
plugin (glance/async_/flows/plugins/image_conversion.py, common where Ceph keeps images raw) that
data is not the file: the plugin converts it to its ``output_format`` (raw by default, or qcow2 or
vmdk) and sets ``disk_format`` to it, ``container_format`` to bare and ``size`` and
``virtual_size`` to the converted disk's; the import task's result holds only the image id (its
``api_image_import`` flow), so nothing records the digest of what was sent. A check of the stored
digests against the file's own would fail on every import into such a cloud, and every retry
would delete and import again. So:

- ``disk_format`` still the one sent (no plugin, or its output is the same format): Glance's
  digests must be the file's;
- ``raw``: they must be the digests of the file's disk content, what ``qemu-img convert -O raw``
  writes (the same bytes whoever converts);
- another format (vmdk: its header differs at each conversion): Glance's data is downloaded (the
  SDK checks it against Glance's own digest while it streams) and compared with the file as a disk
  (``qemu-img compare``);
- in every case ``virtual_size``, where Glance records it, is the file's.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.clouds.openstack import openstack_errors
from airflow_provider_imagebuild.destinations.ovf import virtual_size
from airflow_provider_imagebuild.errors import TargetError
from airflow_provider_imagebuild.targets.rootfs import run_tool

SENT_FORMAT = "qcow2"  # what the sealed image is, and the disk_format it is created with
CHUNK = 4 << 20


def digests_of(path: Path, algorithms: list[str]) -> dict[str, str]:
    """Hex digests of a file, every algorithm in one read."""
    hashers = {name: hashlib.new(name) for name in dict.fromkeys(algorithms)}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


@dataclass
class SentImage:
    """The image file that goes up, and its digests as each stored form, computed once."""

    path: Path
    _digests: dict[tuple[str, str], str] = field(default_factory=dict)

    @cached_property
    def virtual_size(self) -> int:
        return virtual_size(self.path)

    def digests(self, form: str, algorithms: list[str]) -> dict[str, str]:
        """Digests of the file as it is (``qcow2``) or of its disk content (``raw``)."""
        missing = [a for a in algorithms if (form, a) not in self._digests]
        if missing and form == SENT_FORMAT:
            self._digests.update({(form, a): v for a, v in digests_of(self.path, missing).items()})
        elif missing:
            with tempfile.TemporaryDirectory(prefix=".glance-raw-", dir=self.path.parent) as tmp:
                raw = Path(tmp) / "disk.raw"  # sparse: as large on disk as the data
                run_tool(["qemu-img", "convert", "-O", "raw", str(self.path), str(raw)], "qemu-img convert to raw")
                self._digests.update({(form, a): v for a, v in digests_of(raw, missing).items()})
        return {a: self._digests[(form, a)] for a in algorithms}


def stored_mismatch(conn: Any, image: Any, sent: SentImage) -> str | None:
    """Why the data of an active Glance image is not ``sent`` (a transfer cut short, another
    seal's image), or None when it is."""
    stored = str(image.disk_format or "")
    if image.virtual_size is not None and int(image.virtual_size) != sent.virtual_size:
        return f"its virtual size {image.virtual_size} is not the file's {sent.virtual_size}"
    if stored in (SENT_FORMAT, "raw"):
        algorithm = str(image.hash_algo or "")
        known = algorithm in hashlib.algorithms_available
        expected = sent.digests(stored, ["md5", algorithm] if known else ["md5"])
        what = "the file's" if stored == SENT_FORMAT else "the file's disk content's (Glance converted it to raw)"
        if image.checksum != expected["md5"]:
            return f"its stored checksum {image.checksum} is not {what} MD5 {expected['md5']}"
        if known and image.hash_value != expected[algorithm]:
            return f"its stored {algorithm} {image.hash_value} is not {what} {expected[algorithm]}"
        return None
    return _compared_as_disks(conn, image, sent, stored)


def _compared_as_disks(conn: Any, image: Any, sent: SentImage, stored: str) -> str | None:
    """Glance converted the image to a format whose bytes no second conversion reproduces: its
    data is fetched and compared with the file disk to disk."""
    with tempfile.TemporaryDirectory(prefix=".glance-check-", dir=sent.path.parent) as tmp:
        copy = Path(tmp) / f"stored.{stored or 'img'}"
        try:
            with openstack_errors(f"download image {image.id} to compare it"):
                conn.image.download_image(image, output=str(copy))
        except TargetError as exc:  # includes the SDK's own digest check of the download
            return f"its stored {stored} data could not be read back ({exc})"
        argv = ["qemu-img", "compare", "-q", "-f", stored, "-F", SENT_FORMAT, str(copy), str(sent.path)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    if proc.returncode == 1:
        return f"its stored {stored} disk differs from the file's"
    return f"its stored {stored} data is not a disk qemu-img reads ({(proc.stderr or proc.stdout).strip()[-200:]})"
