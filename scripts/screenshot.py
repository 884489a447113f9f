"""Takes the README screenshot: starts the app, uploads a clip in Debian's headless
Chromium (driven by Playwright, no browser download) and saves assets/screenshot.png.

    .venv/bin/python scripts/screenshot.py [CLIP] [--out assets/screenshot.png]

Without CLIP it uses a RAVDESS clip from ../shared when present.
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


def start_app(port: int) -> subprocess.Popen:
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", nargs="?",
                    default=str(ROOT.parent / "shared/data/ravdess16k/Actor_02/03-01-05-02-01-01-02.flac"))
    ap.add_argument("--out", default=str(ROOT / "assets" / "screenshot.png"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_app(port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle")
            page.get_by_text("Waiting for audio").wait_for(timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(args.clip)
            page.get_by_text("Emotion", exact=True).wait_for(timeout=60_000)
            page.get_by_text("About this model").click()
            time.sleep(1.5)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
