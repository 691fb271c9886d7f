"""Open an HTML file in Debian's headless Chromium (Playwright for Python) and report what loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def require_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian chromium is not installed (.ci/run installs it via scripts/ci_services.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright for Python is not installed")


def inspect_page(path: Path, screenshot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(path.resolve().as_uri())
        info = page.evaluate(
            """() => ({
                images: Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0})),
                tables: Array.from(document.querySelectorAll('table[id]')).map(t => t.id),
                headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
            })"""
        )
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return info
