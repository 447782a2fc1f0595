"""Links to the images a milestone produced, for the task's extra link and the build page:
the cloud's console for an image in its region (the Azure portal for a resource id), a ``file://``
URL for the local catalog.

Only well-formed ids and regions become links (outputs are data a tool printed, and a link is
something a person clicks)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from airflow_provider_imagebuild.clouds.aws import AWS_REGION_RE
from airflow_provider_imagebuild.targets.base import CHECKPOINT_OUTPUT, IMAGE_OUTPUT

AMI_RE = re.compile(r"ami-[0-9a-f]{8,17}", re.ASCII)
# An image, snapshot or gallery image version of the Azure target (ARM resource ids).
AZURE_ID_RE = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[A-Za-z0-9._()-]{1,90}/providers/Microsoft\.Compute/"
    r"(images|snapshots|galleries/[A-Za-z0-9._]{1,80}/images/[A-Za-z0-9._-]{1,80}/versions)/[A-Za-z0-9._-]{1,80}",
    re.ASCII,
)


def aws_image_console(region: str, image_id: str) -> str | None:
    if not (AWS_REGION_RE.fullmatch(region) and AMI_RE.fullmatch(image_id)):
        return None
    return f"https://{region}.console.aws.amazon.com/ec2/home?region={region}#ImageDetails:imageId={image_id}"


def azure_portal(resource_id: str) -> str | None:
    if not AZURE_ID_RE.fullmatch(resource_id):
        return None
    return f"https://portal.azure.com/#@/resource{resource_id}"


GCE_IMAGE_RE = re.compile(
    r"(?:https?://[^/]+/compute/v1/)?projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/global/images/([a-z][-a-z0-9]{0,62})",
    re.ASCII,
)


def gcp_console(image: str) -> str | None:
    found = GCE_IMAGE_RE.fullmatch(image)
    if found is None:
        return None
    project, name = found.groups()
    return f"https://console.cloud.google.com/compute/imagesDetail/projects/{project}/global/images/{name}?project={project}"


def local_file(path: object) -> str | None:
    if not isinstance(path, str) or not PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        return None
    return "file://" + quote(path)


def image_links(cloud: str, outputs: Mapping[str, Any]) -> dict[str, str]:
    """Label -> URL for each image in a milestone's outputs (published copies first)."""
    links: dict[str, str] = {}
    if cloud == "aws":
        published = outputs.get("published_images")
        if isinstance(published, Mapping):
            for region, image in published.items():
                url = aws_image_console(str(region), str(image))
                if url:
                    links[f"{image} ({region})"] = url
        region = str(outputs.get("image_region") or "")
        for key in (IMAGE_OUTPUT, CHECKPOINT_OUTPUT):
            url = aws_image_console(region, str(outputs.get(key) or ""))
            if url and str(outputs[key]) not in " ".join(links):
                links[f"{outputs[key]} ({region})"] = url
    elif cloud == "azure":
        for key in ("gallery_image_version_id", IMAGE_OUTPUT, CHECKPOINT_OUTPUT):
            url = azure_portal(str(outputs.get(key) or ""))
            if url:
                links[str(outputs[key]).rsplit("/", 1)[-1]] = url
    elif cloud == "gcp":
        for key in ("image_self_link", IMAGE_OUTPUT, CHECKPOINT_OUTPUT):
            url = gcp_console(str(outputs.get(key) or ""))
            if url:
                links.setdefault(str(outputs[key]).rsplit("/", 1)[-1], url)
    elif cloud == "local":
        for key in ("catalog_image", IMAGE_OUTPUT, CHECKPOINT_OUTPUT):
            url = local_file(outputs.get(key))
            if url:
                links[str(outputs[key])] = url
    return links
