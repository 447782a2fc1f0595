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


def main() -> None:
    ebs_backed_images()
    strict_image_names()
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False)
    print(f"moto (serial) listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
