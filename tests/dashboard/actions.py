"""Drives the cidfs dashboard's actions in the system Chromium through Playwright.

Usage: actions.py URL STEP JSON
  URL   the dashboard (http://127.0.0.1:PORT/ui/)
  STEP  "first": pin CID without the token (must fail), paste TOKEN, pin CID, connect to ADDR,
        unmount DIR; "second": unpin CID, then collect garbage
  JSON  {"token", "cid", "addr", "dir", "chromium"}
Prints one line per action: "<label>: <message shown>". Exits 1 if an action's message is not
what it must be. Every wait is bounded (Playwright's timeouts)."""

import json
import sys

from playwright.sync_api import sync_playwright

url, step, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
TIMEOUT = 60_000  # ms, per wait


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args["chromium"],
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT)
            page.goto(url)
            page.wait_for_selector('body[data-loaded="1"]')
            failed = []

            def expect(label, click, good):
                click()
                page.wait_for_function(
                    "label => { const t = document.getElementById('msg').textContent;"
                    " return t.startsWith(label + ':'); }",
                    arg=label,
                )
                text = page.inner_text("#msg")
                print(text, flush=True)
                if good not in text:
                    failed.append(f"{label}: wanted {good!r}, saw {text!r}")

            def row_button(action, arg):
                return lambda: page.click(
                    f'button.row-action[data-action="{action}"][data-arg="{arg}"]'
                )

            if step == "first":
                page.wait_for_selector(f'button[data-action="pin"][data-arg="{args["cid"]}"]')
                expect("pin", row_button("pin", args["cid"]), "pin: 403")
                page.fill("#token", args["token"])
                expect("pin", row_button("pin", args["cid"]), "pin: done")
                page.fill("#connect-addr", args["addr"])
                expect("connect", lambda: page.click("#connect"), "connect: done")
                page.wait_for_selector(f'button[data-action="umount"][data-arg="{args["dir"]}"]')
                expect("unmount", row_button("umount", args["dir"]), "unmount: done")
            else:
                page.fill("#token", args["token"])
                expect("unpin", row_button("unpin", args["cid"]), "unpin: done")
                expect("gc", lambda: page.click("#gc"), "gc: done")
            page.screenshot(path=args.get("shot", "/dev/null"), full_page=True)
            if failed:
                print("\n".join(failed), file=sys.stderr)
                sys.exit(1)
        finally:
            browser.close()


main()
