"""Playwright driving Debian's Chromium (never `playwright install`) against the real server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API runs an event loop on this thread; the ORM calls the tests make
    # around it are ordinary synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is required for browser tests (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def log_in(browser: Any, web_server: Any) -> Callable[..., Any]:
    """A new browser session logged in as `username`, on its inbox (or front page), with the
    page's script errors and CSP violations collected in `page.errors`."""

    def open_page(username: str, *, live: bool = True, **context: Any) -> Any:
        """`context`: Playwright's context options (e.g. a phone's viewport and touch)."""
        options = {"viewport": {"width": 1280, "height": 800}, **context}
        page = browser.new_context(**options).new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("console", lambda message: _collect(page.errors, message))
        page.goto(f"{web_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        if live:
            page.wait_for_selector("body[data-live=open]", timeout=10_000)
        return page

    return open_page


def _collect(errors: list[str], message: Any) -> None:
    # A 4xx answer (a refused form comes back 422) is logged too; it is not a page defect.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)
