"""The team lead's inbox, open in a real browser for the whole run."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from tools.soak import LEAD, PASSWORD
from tools.stack import CHROMIUM, CHROMIUM_ARGS

# Counts the live socket's openings and closings, from before the page's own scripts run.
_WATCH_SOCKET = """
window.__soak = {opened: 0, closed: 0};
document.addEventListener("htmx:wsOpen", () => { window.__soak.opened += 1; });
document.addEventListener("htmx:wsClose", () => { window.__soak.closed += 1; });
"""
_ROWS = "() => Array.from(document.querySelectorAll('tr[id^=\"request-\"]')).map(r => r.id)"
ROW_IDS = re.compile(r'<tr[^>]*\bid="(request-[0-9a-f-]+)"')


class Inbox:
    """The team lead's inbox, open in Chromium for the whole run (when Chromium is installed:
    without it the run goes on, and says so)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.page: Any = None
        self.playwright: Any = None

    async def open(self, base: str) -> None:
        if not os.path.exists(CHROMIUM):
            return
        from playwright.async_api import async_playwright

        self.playwright = await async_playwright().start()
        browser = await self.playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        self.page = await browser.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        await self.page.add_init_script(_WATCH_SOCKET)
        await self.page.goto(f"{base}/login/")
        await self.page.fill("#id_username", LEAD)
        await self.page.fill("#id_password", PASSWORD)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_selector("body[data-live=open]", timeout=15_000)

    async def state(self) -> str:
        if self.page is None:
            return f"not open: no Chromium at {CHROMIUM} (apt-get install chromium)"
        rows = len(await self.page.evaluate(_ROWS))
        socket = await self.page.evaluate("() => window.__soak")
        live = await self.page.evaluate("() => document.body.dataset.live")
        return (
            f"{rows} rows, socket {live} (opened {socket['opened']}x, closed "
            f"{socket['closed']}x), {len(self.errors)} script errors"
        )

    async def matches_a_fresh_load(self) -> tuple[bool, str]:
        """Whether the rows the live updates left in the page are the rows a fresh load of the
        inbox shows (the same session). Timers still fire, so a comparison that a change fell
        into (the page changed while the fresh copy was loading) is made again."""
        if self.page is None:
            return True, "not checked (no browser)"
        detail = ""
        for _ in range(20):
            before = set(await self.page.evaluate(_ROWS))
            fresh = await self.page.context.request.get(self.page.url)
            loaded = set(ROW_IDS.findall(await fresh.text()))
            if before != set(await self.page.evaluate(_ROWS)):
                await asyncio.sleep(0.3)
                continue
            if before == loaded:
                return True, f"{len(loaded)} rows, the same"
            detail = (
                f"{len(before - loaded)} rows only in the live page, "
                f"{len(loaded - before)} only in a fresh load"
            )
            await asyncio.sleep(1)
        return False, detail or "the page never held still long enough to compare"

    async def close(self) -> None:
        """Stop the browser and its driver."""
        if self.playwright is not None:
            await self.playwright.stop()
