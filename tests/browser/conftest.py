"""A real headless Chromium (Debian's `chromium`) driven by Playwright, and what it needs.

Playwright's own browser downloads are never used: the test drives the system Chromium, which
`make test` installs (the `browser` target). Missing pieces fail the test with the fix; the
browser test is never skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

BASE_DIR = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The system Chromium under Playwright, for one test."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's chromium package. "
            "Run `make test` as root (it installs it) or `sudo apt-get install -y chromium`.",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "playwright is not installed: `make venv` installs the dev extras.", pytrace=False
        )
    # Playwright's sync API runs an event loop on this thread; Django would take the test's
    # ORM calls between browser steps for async code without this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # The ORM calls made meanwhile got a connection of their own (Django keeps one per
            # async context): close it here, or it keeps the test database from being dropped.
            connections.close_all()


@pytest.fixture(scope="session")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Static files collected as a deployment does, for the web process's WhiteNoise."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={**os.environ, "STATIC_ROOT": str(root)},
        check=True,
        timeout=300,
    )
    return root
