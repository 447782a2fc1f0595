"""The stand-in template's provisioner: an image on the fake Compute Engine, as Packer's
googlecompute builder would leave it, and the manifest entry its post-processor would write.

Authenticates with the service account key file in ``GOOGLE_APPLICATION_CREDENTIALS`` (Packer's
environment, set by the target): its ``token_uri`` is the fake's. Standard library only: Packer
runs it with the system's python3.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid


def call(method: str, url: str, token: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


def main() -> None:
    env = os.environ
    with open(env["GOOGLE_APPLICATION_CREDENTIALS"], encoding="utf-8") as key_file:
        key = json.load(key_file)
    form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}).encode()
    with urllib.request.urlopen(urllib.request.Request(key["token_uri"], data=form), timeout=10) as answer:
        token = json.loads(answer.read())["access_token"]
    base = f"{env['COMPUTE_ENDPOINT'].rstrip('/')}/projects/{env['STANDIN_PROJECT']}/global"
    source = env.get("STANDIN_SOURCE", "")
    if not source:  # the kickstart: the newest image of the vendor family
        query = urllib.parse.quote(f'family = "{env["STANDIN_FAMILY"]}"')
        items = call("GET", f"{base}/images?filter={query}", token).get("items") or []
        source = max(items, key=lambda i: i["creationTimestamp"])["selfLink"]
    elif "/" not in source:  # googlecompute's source_image is a name; Image.sourceImage takes a URL
        source = f"projects/{env['STANDIN_PROJECT']}/global/images/{source}"
    try:  # googlecompute's first step (StepCheckExistingImage): an image of that name stops the build
        call("GET", f"{base}/images/{env['STANDIN_IMAGE']}", token)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    else:
        project = env["STANDIN_PROJECT"]
        print(f"Image {env['STANDIN_IMAGE']} already exists in project {project}. Use the force flag to delete it.")
        raise SystemExit(1)
    body = {"name": env["STANDIN_IMAGE"], "sourceImage": source, "labels": json.loads(env["STANDIN_LABELS"])}
    operation = call("POST", f"{base}/images", token, body)
    call("POST", f"{base}/operations/{operation['name']}/wait", token)
    run = env.get("PACKER_RUN_UUID") or str(uuid.uuid4())
    manifest = {
        "builds": [
            {
                "name": env.get("PACKER_BUILD_NAME", "standin"),
                "builder_type": "googlecompute",
                "artifact_id": env["STANDIN_IMAGE"],
                "packer_run_uuid": run,
            }
        ],
        "last_run_uuid": run,
    }
    with open(env["STANDIN_MANIFEST"], "w", encoding="utf-8") as out:
        json.dump(manifest, out)
    print(f"A disk image was created: {env['STANDIN_IMAGE']}")


if __name__ == "__main__":
    main()
