"""The stand-in template's provisioner: a managed image on the fake Resource Manager, as Packer's
azure-arm builder would leave it, and the manifest entry its post-processor would write.

Authenticates as the worker's managed identity (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``), puts
the image in the template's ``azure_subscription_id`` and resource group, and fails if a client
secret reached its command line. Standard library only: Packer runs it with the
system's python3.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid


def call(
    method: str, url: str, token: str | None = None, body: object = None, headers: dict | None = None
) -> tuple[dict, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
        return (json.loads(text) if text else {}), dict(answer.headers)


def main() -> None:
    assert not any("SECRET" in arg for arg in sys.argv), "a secret on the command line"
    env = os.environ
    token_url = f"{env['IDENTITY_ENDPOINT']}?api-version=2019-08-01&resource=https://management.azure.com/"
    token = call("GET", token_url, headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]})[0]["access_token"]
    image_id = (
        f"/subscriptions/{env['STANDIN_SUBSCRIPTION']}/resourceGroups/{env['STANDIN_GROUP']}"
        f"/providers/Microsoft.Compute/images/{env['STANDIN_IMAGE']}"
    )
    try:  # azure-arm's builder.go stops before anything is made when the image exists (no -force)
        call("GET", f"{env['ARM_ENDPOINT']}{image_id}?api-version=2026-04-01", token)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    else:
        raise SystemExit(
            f"the managed image named {env['STANDIN_IMAGE']} already exists in the resource group "
            f"{env['STANDIN_GROUP']}, use the -force option to automatically delete it."
        )
    body = {
        "location": env["STANDIN_LOCATION"],
        # What the shipped template's azure_tags put on the image (local.tags in rhel8-azure.pkr.hcl).
        "tags": {
            "BuildId": env["STANDIN_BUILD_ID"],
            "Pipeline": env["STANDIN_PIPELINE"],
            "Milestone": env["STANDIN_MILESTONE"],
            "ImageType": env["STANDIN_IMAGE_TYPE"],
            "ManagedBy": "airflow-provider-imagebuild",
        },
        "properties": {
            "hyperVGeneration": "V2",
            "storageProfile": {
                "osDisk": {
                    "osType": "Linux",
                    "osState": "Generalized",
                    "blobUri": f"https://standin.blob.core.windows.net/vhds/{env['STANDIN_IMAGE']}.vhd",
                }
            },
        },
    }
    _, headers = call("PUT", f"{env['ARM_ENDPOINT']}{image_id}?api-version=2026-04-01", token, body)
    status = headers.get("Azure-AsyncOperation")
    for _ in range(200):
        if not status or call("GET", status, token)[0].get("status") == "Succeeded":
            break
        time.sleep(float(headers.get("Retry-After") or 0.2))
    else:
        raise SystemExit(f"image {image_id} was not created")
    run = env.get("PACKER_RUN_UUID") or str(uuid.uuid4())
    manifest = {
        "builds": [
            {
                "name": env.get("PACKER_BUILD_NAME", "standin"),
                "builder_type": "azure-arm",
                "artifact_id": image_id,
                "packer_run_uuid": run,
            }
        ],
        "last_run_uuid": run,
    }
    with open(env["STANDIN_MANIFEST"], "w", encoding="utf-8") as out:
        json.dump(manifest, out)
    print(f"ManagedImageId: {image_id}")


if __name__ == "__main__":
    main()
