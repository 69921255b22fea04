"""The screenshots of docs/dashboard.md, taken on the demo's data in Debian's chromium.

A private redis-server, ``redrive demo`` on it, ``redrive dashboard``, and one page
after another, each saved as ``docs/images/dashboard-<page>.png``::

    PYTHONPATH=src .venv/bin/python -m tests.web.screenshots
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from redrive.testing import RedisProcess
from tests.web.browser import ROOT, chromium, serve

IMAGES = ROOT / "docs" / "images"
TOKEN = "screenshots-token-0123456789abcdef"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"), full_page=False)
    print(f"docs/images/dashboard-{name}.png")


def pages(page: Any, base: str) -> None:
    page.goto(f"{base}/login?token={TOKEN}")
    page.wait_for_timeout(1500)  # one live update
    shot(page, "overview")
    page.goto(f"{base}/dlq")
    shot(page, "dead-letters")
    page.locator("#dlq-table tbody tr a").first.click()
    shot(page, "entry")
    page.goto(f"{base}/groups")
    shot(page, "groups")
    page.locator("tr[data-fingerprint] button[value=replay]").first.click()
    shot(page, "preview")
    page.fill("input[name=rate]", "2")
    page.fill("input[name=note]", "gateway fixed, replaying slowly")
    page.click("#confirm-button")
    page.wait_for_timeout(2500)
    page.click("#pause")
    page.wait_for_timeout(1200)
    shot(page, "job")
    page.click("#cancel")
    page.goto(f"{base}/audit")
    shot(page, "audit")


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    env_python = [sys.executable, "-m", "redrive.cli"]
    with RedisProcess() as server, tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*env_python, "--redis-url", server.url, "demo", "--no-dashboard"],
                       check=True, capture_output=True)  # fmt: skip
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        served = serve(server.url, token_file)
        dashboard = next(served)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 860})
                pages(page, dashboard.base)
                browser.close()
        finally:
            served.close()


if __name__ == "__main__":
    main()
