"""A failed build's page says what changed at and before the failing milestone since the
pipeline's last delivered build (#32), from the inputs each attempt recorded: the changed inputs
per milestone, or that nothing recorded changed (the cause lies elsewhere)."""

from __future__ import annotations

import hashlib
import html
import json
import re

from airflow_provider_imagebuild.store import BuildStore
from tests.plugin.test_next_moves import may, store  # noqa: F401 - fixtures
from tests.plugin.test_pages import DAG, PLAN, client_for, owner

BASE = {"spec": "1111111111111111", "file:../ansible/45-storage.yml": "a" * 40, "tool:ansible-core": "2.19.14"}


def _build(where: BuildStore, build_id: str, inputs: dict[int, dict[str, str]], fail_at: int | None) -> None:
    """A build whose attempts recorded ``inputs`` per milestone (BASE where not given)."""
    where.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    where.set_metadata(build_id, {"dag_id": DAG})
    previous = ""
    for code in PLAN[1:]:
        made = {**inputs.get(code, BASE), "previous": previous}
        fingerprint = hashlib.sha256(json.dumps([made, code]).encode()).hexdigest()
        lease = where.begin(build_id, code, owner=owner(f"s{code:03d}_x", 1))
        if code == fail_at:
            where.fail(
                build_id, code, token=lease.token, error="nfs mount failed", fingerprint=fingerprint, inputs=made
            )
            return
        where.complete(build_id, code, token=lease.token, fingerprint=fingerprint, inputs=made)
        previous = fingerprint


def _panel(build_id: str) -> str:
    page = client_for("viewer").get(f"/builds/{build_id}").text
    found = re.search(r'<section class="failure" id="failure">.*?</section>', page, re.S)
    assert found, "no failure panel"
    return html.unescape(found.group(0))


def test_the_failed_page_names_what_changed_since_the_last_delivered_build(store: BuildStore, may: None) -> None:  # noqa: F811
    _build(store, "night-1", {}, None)
    newer = {**BASE, "file:../ansible/45-storage.yml": "b" * 40, "tool:ansible-core": "2.20.0"}
    _build(store, "night-2", {45: newer}, fail_at=45)
    panel = _panel("night-2")
    assert "what changed since build night-1 (the last delivered, " in panel
    found = re.search(r'<ul id="failure-changed">(.*?)</ul>', panel, re.S)
    assert found and re.findall(r"<li>(.*?)</li>", found.group(1)) == [
        "45 · Storage layout: file ../ansible/45-storage.yml changed; tool ansible-core 2.19.14 -> 2.20.0"
    ]
    assert "imagebuild build diff night-1 night-2" in panel

    _build(store, "night-3", {}, fail_at=45)  # nothing recorded changed: the cause lies elsewhere
    assert "no recorded input of milestones up to 45 changed since build night-1" in _panel("night-3")
