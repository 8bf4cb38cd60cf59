"""What the browser tests share: Debian's Chromium driven by Playwright (the ``browser``, ``new_page`` and
``page`` fixtures are in ``conftest.py``), screenshots, and the dashboard's stat panels."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
VIEWPORT = {"width": 1440, "height": 1000}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def stat(page: Any, panel_id: str) -> str:
    return page.locator(f'[data-panel="{panel_id}"] .stat-value').inner_text()


def wait_stat(page: Any, panel_id: str, text: str, timeout: float = 5000) -> None:
    page.wait_for_function(
        '([id, text]) => { const n = document.querySelector(`[data-panel="${id}"] .stat-value`);'
        " return n && n.textContent === text; }",
        arg=[panel_id, text],
        timeout=timeout,
    )
