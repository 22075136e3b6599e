"""Helpers for browser tests: headless Debian Chromium driven by Playwright's sync API.

Playwright's async API does not run under trio, so each scenario runs whole inside one
worker thread (``run_scenario``) while the real server keeps serving on the trio loop.
Every wait inside a scenario carries its own timeout: a worker thread cannot be cancelled.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
import trio

T = TypeVar("T")

CHROMIUM = os.environ.get("MEET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-gpu",
    "--disable-quic",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--auto-select-desktop-capture-source=Entire screen",  # getDisplayMedia without a picker
]
TIMEOUT_MS = 15_000


def require_chromium() -> None:
    """Fail loudly (not skip) when the browser is missing: CI installs it."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; install Debian's chromium package")


def poll(check: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
    """Re-evaluate ``check`` until it returns something truthy (browser state changes on its
    own schedule; ``page.wait_for_function`` is unreliable for async checks)."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}; last value {last!r}")
        time.sleep(0.1)
        last = check()
    return last


async def run_scenario(scenario: Callable[..., T], args: Sequence[str] = CHROMIUM_ARGS) -> T:
    """Run ``scenario(browser)`` in a worker thread with a fresh headless Chromium (``args``:
    its command line, CHROMIUM_ARGS unless a test needs e.g. more fake devices)."""
    require_chromium()

    def in_thread() -> T:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(args), timeout=TIMEOUT_MS)
            try:
                return scenario(browser)
            finally:
                browser.close()

    return await trio.to_thread.run_sync(in_thread)


def open_page(browser: Any, base: str, name: str, password: str, **context: Any) -> Any:
    """A page signed in as ``name`` in its own browser context (own cookies), collecting its
    script errors in ``page.errors``; ``context``: Playwright's new_context options (viewport —
    1024×700 unless given —, locale, …)."""
    context.setdefault("viewport", {"width": 1024, "height": 700})
    ctx = browser.new_context(**context)
    r = ctx.request.post(f"{base}/api/auth/login", data={"login": name, "password": password})
    assert r.ok, r.text()
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page
