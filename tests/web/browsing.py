"""What the dashboard's browser tests share: Debian's Chromium driven by Playwright, and where screenshots go.

Needs the `playwright` package (the test extras) and a Chromium: $TALLY_CHROMIUM, else /usr/bin/chromium
(Debian's `chromium` package; .ci/run installs it). Tests that need them skip, saying why, without them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TALLY_ARTIFACTS", ROOT / "test-artifacts")) / "dashboard"
TIMEOUT_MS = 60_000  # generous: the machine may be slow and busy
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-extensions", "--no-first-run"]


def _chromium() -> str:
    given = os.environ.get("TALLY_CHROMIUM")
    for candidate in (given, "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no Chromium here: install Debian's `chromium` package (apt-get install chromium) or set "
                "TALLY_CHROMIUM to a Chromium binary")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package is not installed "
                                   "(pip install -e '.[test]')")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot under the artifacts folder (a subfolder when `name` has a slash)."""
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
