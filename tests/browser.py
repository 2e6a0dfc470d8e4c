"""A real Chromium driven by Playwright, for the tests of pages.

The browser is the system's Chromium (``apt-get install chromium``), never one Playwright
downloads: ``CHROMIUM`` names its path, else ``chromium`` / ``chromium-browser`` on ``PATH``. When
none is installed the browser tests are skipped, unless ``REQUIRE_BROWSER=1`` (CI) makes that a
failure. ``SCREENSHOT_DIR=docs/images`` saves the screenshots the tests take into that folder (the
ones the README shows); otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def page(monkeypatch):
    """A page of a fresh Chromium at 1280x800, the size the pages are checked at.

    One browser per test: Playwright's synchronous API keeps an event loop in this thread while it
    runs, which Django takes for async code, so it must not outlive the test. The test's own ORM
    calls are synchronous code all the same (the live server answers from its own thread).
    """
    path = chromium_path()
    if path is None:
        message = "no system Chromium (apt-get install chromium, or set CHROMIUM)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(30_000)
        yield page
        browser.close()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, "login")`` saves a full-page PNG (to SCREENSHOT_DIR when set)."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
