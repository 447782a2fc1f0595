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


def main() -> None:
    ebs_backed_images()
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False)
    print(f"moto (serial) listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
