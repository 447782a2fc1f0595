"""moto's real HTTP server app, served one request at a time on loopback.

``moto_server`` handles requests on many threads and its S3 backend checks ``If-Match`` /
``If-None-Match`` and then writes without a lock, so two racing conditional writes can both
succeed there (moto's maintainers say it is not concurrency-safe). Real S3 applies conditional
writes atomically per key; serving requests one at a time gives the tests that same guarantee,
so the store's compare-and-swap is what the race tests actually exercise. Clients still race
for real: many threads and processes send requests concurrently over HTTP.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from moto.moto_server.threaded_moto_server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def ebs_backed_images() -> None:
    """Images made by CreateImage from an EBS-backed instance are EBS-backed (``RootDeviceType:
    ebs``) on AWS; moto marks them ``standard``, and Packer's amazon-ebs then refuses them as a
    source ("invalid root device type"). Correct that one field so that a green image can be built
    from the kickstart image, as on AWS."""
    from moto.ec2.models import amis

    original = amis.Ami.__init__

    def init(self: amis.Ami, *args: object, **kwargs: object) -> None:
        if kwargs.get("instance") is not None:
            kwargs.setdefault("root_device_type", "ebs")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    amis.Ami.__init__ = init  # type: ignore[method-assign]


def strict_image_names() -> None:
    """EC2 refuses AMI names and descriptions that moto takes, and tags the snapshots CreateImage
    makes, which moto does not. CreateImage, CopyImage and
    RegisterImage (EC2 API reference): Name "3-128 alphanumeric characters, parentheses (()), square
    brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@),
    or underscores(_)", else ``InvalidAMIName.Malformed``; a name an AMI of the account already has
    in the region, ``InvalidAMIName.Duplicate``; Description "Up to 255 characters", else
    ``InvalidParameterValue``. Applied before moto's own code runs."""
    import re

    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import AmiBackend

    name_re = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")

    def check(backend: AmiBackend, name: str | None, description: str | None) -> None:
        if name is not None:
            if not name_re.fullmatch(name):
                raise EC2ClientError(
                    "InvalidAMIName.Malformed",
                    "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, "
                    f"'(', ')', '.', '-', '/' and '_' ({name!r})",
                )
            owner = backend.account_id  # type: ignore[attr-defined]
            for ami in backend.amis.values():
                if ami.name == name and ami.owner_id == owner:
                    raise EC2ClientError(
                        "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {ami.id}"
                    )
        if description is not None and len(description) > 255:
            raise EC2ClientError("InvalidParameterValue", "Value for parameter description is invalid: too long")

    def create_image(original: Any) -> Any:
        def create(self: AmiBackend, instance_id: str, name: str, description: str, *args: Any, **kwargs: Any) -> Any:
            check(self, name, description)
            # CreateImage tags "the snapshots that are created" with a TagSpecification of
            # ResourceType snapshot (EC2 API reference; newer Packer amazon plugins send one); moto
            # raises NotImplementedError for it, so those tags are put on the image's snapshot here.
            specs = kwargs.pop("tag_specifications", None) or []
            snapshot_tags = [t for spec in specs if spec["ResourceType"] == "snapshot" for t in spec["Tags"]]
            kwargs["tag_specifications"] = [spec for spec in specs if spec["ResourceType"] != "snapshot"]
            ami = original(self, instance_id, name, description, *args, **kwargs)
            if snapshot_tags:
                self.create_tags([ami.ebs_snapshot.id], {t["Key"]: t["Value"] for t in snapshot_tags})  # type: ignore[attr-defined]
            return ami

        return create

    def copy_or_register(original: Any, name_at: int) -> Any:
        def call(self: AmiBackend, *args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("name", args[name_at] if len(args) > name_at else None)
            description = kwargs.get("description", args[name_at + 1] if len(args) > name_at + 1 else None)
            check(self, name, description)
            return original(self, *args, **kwargs)

        return call

    AmiBackend.create_image = create_image(AmiBackend.create_image)  # type: ignore[method-assign]
    AmiBackend.copy_image = copy_or_register(AmiBackend.copy_image, 2)  # type: ignore[method-assign]
    AmiBackend.register_image = copy_or_register(AmiBackend.register_image, 0)  # type: ignore[method-assign]


# CopyImage's TagSpecifications (EC2 API reference, botocore's ec2 service-2.json): "To tag the new
# AMI, the value for ResourceType must be image. To tag the new snapshots, the value for ResourceType
# must be snapshot. [...] If you specify other values for ResourceType, the request fails." A Tag's key
# is "a maximum of 127 Unicode characters. May not begin with aws:", its value "a maximum of 256";
# CreateTags: "Each resource can have a maximum of 50 tags".
COPY_TAG_TYPES = ("image", "snapshot")
# Source image id -> the state its copies stay in ("pending": never available; "failed"), as the
# tests set it through COPY_OUTCOME_PATH: a copy that fails half-way, as EC2's copies of large or
# broken snapshots do.
COPY_OUTCOMES: dict[str, str] = {}
COPY_OUTCOME_PATH = "/_imagebuild/ec2/copy-outcome"


def copy_tag_specifications(specs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """CopyImage's tag specifications by resource type, refused as EC2 refuses them (see above)."""
    from moto.ec2.exceptions import EC2ClientError, TagLimitExceeded

    found: dict[str, dict[str, str]] = {}
    for spec in specs:
        kind = spec.get("ResourceType")
        if kind not in COPY_TAG_TYPES:
            raise EC2ClientError(
                "InvalidParameterValue", f"'{kind}' is not a valid taggable resource type for this operation."
            )
        tags = found.setdefault(kind, {})
        for tag in spec.get("Tag") or spec.get("Tags") or []:
            key, value = str(tag.get("Key", "")), str(tag.get("Value", ""))
            if not key or len(key) > 127 or key.lower().startswith("aws:"):
                raise EC2ClientError(
                    "InvalidParameterValue", f"Tag key {key!r} must be 1-127 characters and not begin with aws:"
                )
            if len(value) > 256:
                raise EC2ClientError("InvalidParameterValue", f"Tag value exceeds the maximum length of 256 ({key})")
            tags[key] = value
        if len(tags) > 50:
            raise TagLimitExceeded()
    return found


def ec2_copies() -> None:
    """CopyImage as EC2 does it where moto does not: Name and SourceRegion are required (moto takes
    the source's name); the copy carries the tags of its TagSpecifications (moto drops them), on the
    image and on its new snapshot, refused before anything is made when EC2 refuses them; and it
    names its source (DescribeImages' ``SourceImageId`` and ``SourceImageRegion``). A copy of a
    source the tests named in ``COPY_OUTCOMES`` stays in that state."""
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import MissingParameterError
    from moto.ec2.responses.amis import AmisResponse

    def copy_image(self: AmisResponse) -> ActionResult:
        source_image_id = self._get_param("SourceImageId")
        source_region = self._get_param("SourceRegion")
        name = self._get_param("Name")
        for param, value in (("SourceImageId", source_image_id), ("SourceRegion", source_region), ("Name", name)):
            if not value:
                raise MissingParameterError(param)
        tags = copy_tag_specifications(
            self._get_param("TagSpecification", []) or self._get_param("TagSpecifications", [])
        )
        self.error_on_dryrun()
        image = self.ec2_backend.copy_image(source_image_id, source_region, name, self._get_param("Description"))
        image.source_image_id = source_image_id
        image.source_image_region = source_region
        if tags.get("image"):
            self.ec2_backend.create_tags([image.id], tags["image"])
        if tags.get("snapshot"):
            self.ec2_backend.create_tags([image.ebs_snapshot.id], tags["snapshot"])
        outcome = COPY_OUTCOMES.get(source_image_id)
        if outcome:
            image.state = outcome
            if outcome == "failed":
                image.state_reason = {"Code": "Server.InternalError", "Message": "Internal error copying snapshot"}
        return ActionResult({"ImageId": image.id})

    AmisResponse.copy_image = copy_image  # type: ignore[method-assign]


def with_fault_controls(app: Any) -> Any:
    """``POST COPY_OUTCOME_PATH`` ``{"source_image_id": ..., "state": "pending" | "failed" | ""}``
    sets what becomes of copies of that image (moto's own controls are under ``/moto-api/``)."""
    import json

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != COPY_OUTCOME_PATH or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
        state = str(body.get("state") or "")
        if state not in ("", "pending", "failed"):
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [f"state must be pending, failed or empty, not {state!r}".encode()]
        COPY_OUTCOMES[str(body["source_image_id"])] = state
        start_response("204 No Content", [])
        return [b""]

    return wsgi


def set_copy_outcome(moto_url: str, source_image_id: str, state: str) -> None:
    """Make every later copy of ``source_image_id`` on the server at ``moto_url`` stay ``state``
    ("pending": it never becomes available; "failed"), or behave again (``state`` empty)."""
    import json
    import urllib.request

    body = json.dumps({"source_image_id": source_image_id, "state": state}).encode()
    request = urllib.request.Request(moto_url + COPY_OUTCOME_PATH, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204, answer.status


def main() -> None:
    ebs_backed_images()
    strict_image_names()
    ec2_copies()
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = with_fault_controls(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=False)
    print(f"moto (serial) listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
