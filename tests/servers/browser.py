"""Debian's chromium, driven by Playwright, on Airflow's real UI: what an operator clicks.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (``make setup``
installs it) with the flags that work headless on these machines."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Browser, FrameLocator, Page, expect, sync_playwright

from tests.servers.standalone import PASSWORDS

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}


@contextmanager
def chromium() -> Iterator[Browser]:
    path = shutil.which("chromium")
    assert path, "chromium is not installed: `make setup` installs it (scripts/install-system-deps.sh)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class Operator:
    """One person's browser session on the Airflow UI."""

    def __init__(self, browser: Browser, url: str, user: str) -> None:
        self.url, self.user = url, user
        self.context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        self.context.set_default_timeout(30_000)
        self.page: Page = self.context.new_page()
        self.log_in()

    def log_in(self) -> None:
        """Airflow's own login form (the simple auth manager's)."""
        self.page.goto(f"{self.url}/auth/login")
        self.page.fill("input[name=username]", self.user)
        self.page.fill("input[name=password]", PASSWORDS[self.user])
        self.page.click("button[type=submit]")
        self.page.wait_for_url(lambda u: "/auth/login" not in u)

    def close(self) -> None:
        self.context.close()

    # -- Airflow's own pages ---------------------------------------------------------------------
    def open_failed_task(self, dag_id: str, run_id: str, task_id: str) -> None:
        """The DAG's grid, every task group expanded, then the task's cell in that run."""
        self.page.goto(f"{self.url}/dags/{dag_id}")
        self.page.get_by_label("Expand all task groups").click()
        cell = self.page.locator(f"a[href*='/runs/{run_id}/tasks/{task_id}']").first
        cell.click()
        self.page.wait_for_url(f"**/runs/{quote(run_id, safe=':+')}/tasks/{task_id}*")
        self.page.get_by_text("Failed", exact=True).first.wait_for()

    def clear_with_note(self, note: str) -> None:
        """The task page's Clear button, a note in the dialog, Confirm: what a person clicks."""
        self.page.get_by_label("Press shift+c to clear").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_role("button", name="Note").click()
        dialog.locator("[data-scope=editable][data-part=preview]").click()
        dialog.get_by_test_id("notes-input").fill(note)

        def real_clear(response: Any) -> bool:
            request = response.request
            return (
                request.method == "POST"
                and "/clearTaskInstances" in response.url
                and '"dry_run":false' in (request.post_data or "").replace(" ", "")
            )

        # The dialog closes before Airflow has answered: wait for the clear itself, so that what
        # follows never reads the run's state from before it (seen in CI: the run still "failed").
        with self.page.expect_response(real_clear, timeout=60_000) as cleared:
            dialog.get_by_role("button", name="Confirm").click()
        assert cleared.value.status == 200, f"clear answered {cleared.value.status}: {cleared.value.text()[:300]}"
        dialog.wait_for(state="hidden")

    # -- the plugin's pages, inside Airflow's frame ----------------------------------------------
    def builds_frame(self, path: str = "") -> FrameLocator:
        """The Image builds view from the navigation (``path``: a page inside it, as a deep link)."""
        if path:
            self.page.goto(f"{self.url}/plugin/image-builds/imagebuild{path}")
        else:
            self.page.goto(f"{self.url}/")
            self.page.get_by_role("link", name="Image builds").click()
        frame = self.page.frame_locator("iframe[title='Image builds']")
        frame.locator("header.top").wait_for()
        return frame

    def act(self, frame: FrameLocator, form: str, milestone: int, reason: str) -> str:
        """Fill and submit one of the build page's action forms; the message it shows."""
        form_ = frame.locator(f"#{form}-form")
        form_.locator("select[name=milestone]").select_option(str(milestone))
        form_.locator("input[name=reason]").fill(reason)
        result = frame.locator("#action-result")
        result.evaluate("e => { e.textContent = ''; }")  # the previous action's message
        form_.locator("button[type=submit]").click()
        expect(result).to_have_text(re.compile(r"\S"), timeout=60_000)
        return str(result.inner_text())

    def post_from_page(self, frame_path: str, body: dict[str, Any]) -> int:
        """What a viewer's browser gets when it calls an action anyway (the form is hidden)."""
        status = self.page.evaluate(
            """async ([path, body]) => {
                const r = await fetch(path, {method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
                return r.status;
            }""",
            [frame_path, body],
        )
        return int(status)
