"""A real browser: Debian's headless Chromium, driven by Playwright, uploads a recording to
the running app and checks that the analysis view is drawn (four panels)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                                   reason="needs Debian's chromium (scripts/setup.sh installs it)")]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from screenshot import free_port, start_app

    old = os.environ.get("SER_HISTORY_DB")
    os.environ["SER_HISTORY_DB"] = str(tmp_path_factory.mktemp("history") / "history.sqlite")  # not the user's
    port = free_port()
    try:
        proc = start_app(port)
    finally:
        if old is None:
            os.environ.pop("SER_HISTORY_DB")
        else:
            os.environ["SER_HISTORY_DB"] = old
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def test_upload_draws_the_four_panels(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    from screenshot import open_analyze_page

    with sync_playwright() as pw:
        browser, page = open_analyze_page(pw, app_url)
        page.locator("input[type=file]").first.set_input_files(str(ROOT / "assets" / "demo_dialogue.wav"))
        plot = page.locator(".js-plotly-plot").first
        plot.wait_for(timeout=300_000)
        page.get_by_text("Analysed").first.wait_for(timeout=60_000)
        for title in ("Waveform", "Mel spectrogram", "Speakers", "Emotion"):
            assert plot.locator("text.annotation-text", has_text=title).count() >= 1, title
        assert plot.locator(".heatmaplayer image, .hm image, image").count() >= 1  # the spectrogram raster
        assert plot.locator("g.barlayer path").count() >= 6  # one bar per speaker turn
        assert plot.locator("g.scatterlayer path.js-fill").count() >= 8  # waveform + the emotion areas
        shot = tmp_path / "analyze.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000 and shot.read_bytes()[:4] == b"\x89PNG"
        # a bad upload shows a clear error and the page stays usable
        bad = tmp_path / "notes.wav"
        bad.write_text("not audio " * 100)
        page.locator("input[type=file]").first.set_input_files(str(bad))
        page.get_by_text("could not be decoded").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "bad_upload.png"))
        browser.close()
