"""Retention on vSphere (:mod:`.retire`): the pipeline's items in a content library.

Both ways an image reaches a content library (:mod:`.library_items`) describe the item as
``<pipeline> build <build id> [imagebuild.key=<digest>]...``: the vSphere target's publish (the
final template captured as an OVF item; the description also records the template's seal) and a
local pipeline's ``vsphere_library`` destination (the sealed file uploaded). An item is this
pipeline's only when its description names this pipeline and a build id **and** records the key
that is the digest of exactly those two: anyone may write a description, but a forged one names
another build's digest or none. Items of other pipelines in the same library are never listed.

Retiring an item deletes it (its files go with it) after reading and proving it again; for the
target's items, the final template it was captured from goes too, when it is still in the target's
folder with this build's key, the pipeline, role ``final`` and the seal the item records (a
template sealed again since is another image: left alone). vSphere shows nothing that refers to a
library item (a VM deployed from it is a copy), so no item is kept as referenced.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.vsphere import rest_answer, vsphere_errors
from airflow_provider_imagebuild.errors import NotFound
from airflow_provider_imagebuild.targets.base import MANAGED_BY, build_digest
from airflow_provider_imagebuild.targets.leaks import parse_time
from airflow_provider_imagebuild.targets.library_items import ITEMS, find_library, item_records
from airflow_provider_imagebuild.targets.retire import DELETED, ImageRetiring

log = logging.getLogger(__name__)

KEY_LENGTH = 20  # the digest length both publishers record (targets.base.DigestNames.key)


class LibraryItems(ImageRetiring):
    """The published items of one pipeline in one content library."""

    def __init__(self, clients: Any, library: str, field: str, pipeline: str, target: Any = None) -> None:
        self.clients = clients  # VsphereClients: the vAPI session
        self.library_name, self.field = library, field
        self.pipeline = pipeline
        self.target = target  # the vSphere target whose final templates go with their items; None: a destination
        self._library: str | None = None

    @property
    def library(self) -> str:
        if self._library is None:
            self._library = find_library(self.clients.rest(), self.library_name, self.field)
        return self._library

    def _build_of(self, item: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        """(build id, records) of an item of this pipeline's, else None (see the module's docstring)."""
        description = str(item.get("description", ""))
        text = description.split(" [imagebuild.", 1)[0]
        found = re.fullmatch(rf"{re.escape(self.pipeline)} build (\S+)", text)
        records = item_records(description)
        if found is None or records.get("key") != build_digest(self.pipeline, found.group(1), KEY_LENGTH):
            return None
        return found.group(1), records

    def _item(self, item_id: str) -> dict[str, Any] | None:
        try:
            with vsphere_errors("content library"):
                item = rest_answer(self.clients.rest().get(f"{ITEMS}/id:{item_id}"), f"item {item_id}")
        except NotFound:
            return None
        return dict(item) if item and item.get("library_id") == self.library else None

    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        rest = self.clients.rest()
        with vsphere_errors("content library"):
            ids = rest_answer(rest.get(ITEMS, params={"library_id": self.library}), "list items") or []
        found = []
        for item_id in ids:
            item = self._item(str(item_id))
            owner = self._build_of(item) if item is not None else None
            if item is not None and owner is not None:
                found.append(PublishedImage(str(item_id), self.library_name, owner[0],
                                            parse_time(item.get("creation_time")), build_key=owner[1]["key"],
                                            name=str(item.get("name", ""))))  # fmt: skip
        return found

    def retire_image(self, image: PublishedImage) -> str:
        item = self._item(image.id)
        owner = self._build_of(item) if item is not None else None
        if item is None or owner is None or owner[0] != image.build_id:
            log.info("content library item %s is gone or not this pipeline's; left alone", image.id)
            return ""
        with vsphere_errors(f"delete item {image.name}"):
            rest_answer(self.clients.rest().delete(f"{ITEMS}/id:{image.id}"), f"delete item {image.name}")
        log.info("retired content library item %s (%s) of build %s", image.name, image.id, image.build_id)
        if self.target is not None:
            self._destroy_template(str(item.get("name", "")), owner[1])
        return DELETED

    def _destroy_template(self, name: str, records: dict[str, str]) -> None:
        """The final template the item was captured from, when it is still that image of the build's."""
        from airflow_provider_imagebuild.targets import vsphere as v

        target = self.target
        vm = target._vm(name) if name else None
        if vm is None:
            return
        try:
            options = target._options(vm)
            with vsphere_errors(f"read {name}"):
                template = bool(vm.config.template)
            same = (
                template
                and target._in_folder(vm)
                and options.get(v.MANAGED_OPTION) == MANAGED_BY
                and options.get(v.PIPELINE_OPTION) == self.pipeline
                and options.get(v.KEY_OPTION) == records.get("key")
                and options.get(v.ROLE_OPTION) == "final"
                and target._seal_of(vm) == records.get("seal")
            )
            if not same:
                log.info("template %s is not the item's image any more; left alone", name)
                return
            target.clients.wait(f"destroy {name}", vm.Destroy_Task())
        except NotFound:
            return
        log.info("destroyed the item's final template %s", name)
