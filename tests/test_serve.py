"""``make run``'s launcher (scripts/serve.py): the served dashboard warms up when the server
starts — diarization networks, default model, analysed demo — before any browser connects
(``streamlit run app.py`` runs nothing until the first visit, so its first visitor waited for
all of it), and its log stays quiet."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

pytestmark = pytest.mark.slow


def test_the_server_is_warm_before_its_first_visitor(tmp_path):
    import urllib.request

    from screenshot import free_port, start_app

    log = tmp_path / "serve.log"
    port = free_port()
    with open(log, "w") as fh:
        proc = start_app(port, log=fh)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and "ser: warmed up in" not in log.read_text():
            assert proc.poll() is None, f"the server stopped:\n{log.read_text()}"
            time.sleep(1)
        text = log.read_text()
        assert "ser: warmed up in" in text, text  # no browser has connected: only the launcher warms it
        assert "ser: thread policy on" in text, text  # ser.threads, set before streamlit and torch
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200
        noise = [line for line in text.splitlines() if "Traceback" in line or "ScriptRunContext" in line
                 or "Inotify" in line or "warming the demo failed" in line]
        assert not noise, text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
