"""What a target's source image resolves to now: the value of a watch ``image: source`` (spec/watch.py).

A spec names its source image the way people do (an AMI name pattern, the local Debian base);
what a build really starts from is one image id, and that is what a fingerprint must carry: a
newer image behind the same name is a change. Clouds not listed in :data:`.registry.IMAGE_WATCH_CLOUDS` cannot
resolve one yet, and a spec that asks is refused when it is loaded.
"""

from __future__ import annotations

import hashlib
from typing import Any


def local_base_id() -> str | None:
    """The SHA-256 of the cached debootstrap tarball a local build unpacks (what the local target's
    milestone 5 starts from); None before the first bootstrap made it."""
    from airflow_provider_imagebuild.targets.rootfs import cached_base

    tarball = cached_base()
    if tarball is None:
        return None
    digest = hashlib.sha256()
    with open(tarball, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def aws_source_id(target: Any) -> str | None:
    """An AMI id as given, else the newest AMI whose name matches ``target.source_image``."""
    name = target.settings.source_image
    if not name:
        return None
    if name.startswith("ami-"):
        return str(name)
    with target.api("DescribeImages"):
        images = target.ec2().describe_images(Filters=[{"Name": "name", "Values": [name]}]).get("Images", [])
    newest = max(
        images, key=lambda image: (str(image.get("CreationDate", "")), str(image.get("Name", ""))), default=None
    )
    return str(newest["ImageId"]) if newest else None


def source_image_id(target: Any) -> str | None:
    """The id ``target``'s source image resolves to now (None: it cannot say)."""
    if target.name == "local":
        return local_base_id()
    if target.name == "aws":
        return aws_source_id(target)
    return None
