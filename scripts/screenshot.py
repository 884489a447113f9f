"""Takes the README screenshot: starts the app in Debian's headless Chromium (driven by
Playwright, no browser download), analyses a recording on the Analyze page and saves
assets/screenshot.png.

    .venv/bin/python scripts/screenshot.py [RECORDING] [--out assets/screenshot.png]

Without RECORDING it opens the project's own demo dialogue (assets/demo_dialogue.wav).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, *, log=None, warm: bool = True, plain: bool = False) -> subprocess.Popen:
    """The dashboard as ``make run`` starts it (scripts/serve.py: warmed at start unless ``warm``
    is False; ``plain``: ``streamlit run app.py`` instead, which warms on the first visit), on
    ``port``; its output goes to the open file ``log`` (default: discarded)."""
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "SER_WARM_DEMO": "1" if warm else "0"}
    launcher = ["-m", "streamlit", "run", str(ROOT / "app.py")] if plain else [str(ROOT / "scripts" / "serve.py")]
    proc = subprocess.Popen([sys.executable, *launcher, "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start")


def open_analyze_page(pw, url: str, *, width: int = 1280, height: int = 1400):
    """Launch Debian's Chromium, open the app at ``url`` and wait for the Analyze page; (browser, page)."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url, wait_until="networkidle")
    page.get_by_text("Analyze a recording").first.wait_for(timeout=120_000)
    return browser, page


def choose_upload(page) -> None:
    """Switch the Analyze page from the demo it opens on to its uploader (and wait for the rerun)."""
    page.locator("label").filter(has_text="Upload").first.click(timeout=60_000)
    page.get_by_text("Upload a recording or record one").first.wait_for(timeout=120_000)


def upload(page, path) -> None:
    choose_upload(page)
    page.locator("input[type=file]").first.set_input_files(str(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recording", nargs="?", help="an audio file to upload (default: the first screen, the emotion demo)")
    ap.add_argument("--out", default=str(ROOT / "assets" / "screenshot.png"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_app(port)
    try:
        with sync_playwright() as pw:
            browser, page = open_analyze_page(pw, f"http://127.0.0.1:{port}", height=1500)
            if args.recording:
                upload(page, args.recording)
            page.get_by_text("Analysed").first.wait_for(timeout=300_000)  # the emotion demo opens analysed
            page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
            time.sleep(3)
            page.screenshot(path=args.out, clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
