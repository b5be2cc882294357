"""The real dashboard in headless Chromium, for the scripts that take the README's pictures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Page, sync_playwright

from acc.server import create_app
from acc.server.serving import ServerThread

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking"]  # fmt: skip


@contextmanager
def dashboard_page(store: str, fragment: str) -> Iterator[Page]:
    """A page on ``#<fragment>`` of a server over ``store`` that trains nothing (no job slots),
    once the page says it is ready."""
    app = create_app(store, max_concurrent=0)
    with ServerThread(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{url}/#{fragment}")
            page.wait_for_selector("body[data-ready]")
            yield page
        finally:
            browser.close()
