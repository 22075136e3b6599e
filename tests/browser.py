"""Helpers for browser tests: headless Debian Chromium driven by Playwright's sync API.

Playwright's async API does not run under trio, so each scenario runs whole inside one
worker thread (``run_scenario``) while the real server keeps serving on the trio loop.
Every wait inside a scenario carries its own timeout: a worker thread cannot be cancelled.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TypeVar

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
]
TIMEOUT_MS = 15_000


def require_chromium() -> None:
    """Fail loudly (not skip) when the browser is missing: CI installs it."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; install Debian's chromium package")


async def run_scenario(scenario: Callable[..., T]) -> T:
    """Run ``scenario(browser)`` in a worker thread with a fresh headless Chromium."""
    require_chromium()

    def in_thread() -> T:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
            try:
                return scenario(browser)
            finally:
                browser.close()

    return await trio.to_thread.run_sync(in_thread)
