"""Screenshots a cidfs dashboard after it has watched something happen.

Usage: dashboard-shot.py URL PNG UNTIL [MAX_SECS]
  URL       the dashboard (http://127.0.0.1:PORT/ui/)
  PNG       where the screenshot goes
  UNTIL     a file: the page is loaded, "loaded" is printed, and the screenshot is taken once
            UNTIL exists (the page has polled its state once a second meanwhile, so its rate
            graphs hold everything since it was loaded), or after MAX_SECS (default 600).
Runs the system Chromium through Playwright (scripts/lib.sh's playwright_venv installs it).
Used by scripts/bench-fanout.sh (SCREENSHOT=PNG) for the transfer view of a fan-out.
"""

import os
import shutil
import sys
import time

from playwright.sync_api import sync_playwright

url, png, until = sys.argv[1], sys.argv[2], sys.argv[3]
max_secs = float(sys.argv[4]) if len(sys.argv) > 4 else 600.0
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    sys.exit("no chromium on PATH (apt-get install chromium)")

with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=chromium,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector('body[data-loaded="1"]')
        print("loaded", flush=True)
        deadline = time.monotonic() + max_secs
        while not os.path.exists(until) and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        # one more poll, so the page shows the state at the end
        page.wait_for_timeout(1200)
        page.screenshot(path=png, full_page=True)
        print(f"screenshot: {png}", flush=True)
    finally:
        browser.close()
