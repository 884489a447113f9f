"""Private by default (part of the privacy work): the dashboard listens on loopback only and
does not look up the machine's external address; `ser serve` refuses a network interface
without an API key; batch output names never leave the output folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiogen import tone, write

ROOT = Path(__file__).resolve().parent.parent


def _listening(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, state = fields[1], fields[3]
            host, p = addr.split(":")
            if state == "0A" and int(p, 16) == port:  # LISTEN
                found.append(host)
    return found


def test_dashboard_listens_on_loopback_only_by_default(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
           "SER_HISTORY_DB": str(tmp_path / "h.sqlite")}
    log = tmp_path / "app.log"
    with open(log, "wb") as fh:  # exactly what `make run` does, with another port
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not _listening(port):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        time.sleep(1.0)
        addrs = _listening(port)
        assert addrs, log.read_text()
        assert set(addrs) == {"0100007F"}, addrs  # 127.0.0.1 (little-endian hex), no 0.0.0.0 or ::
        text = log.read_text()
        assert "External URL" not in text and "Network URL" not in text, text
    finally:
        proc.terminate()
        proc.wait(20)


def test_serve_refuses_a_network_interface_without_a_key():
    env = {k: v for k, v in os.environ.items() if k != "SER_API_KEY"}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "ser.cli", "serve", "--host", "0.0.0.0", "--port", "9"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 2 and "SER_API_KEY" in r.stderr and "--insecure" in r.stderr
    assert time.time() - t0 < 60


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                            ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("192.168.1.5", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    from ser.serve.auth import is_loopback
    assert is_loopback(host) is loopback


def test_batch_outputs_stay_in_the_output_folder(tmp_path, tiny_model_dir, monkeypatch):
    from ser.serve.batch import BatchOptions, output_stem, run_batch

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    y = tone(2.0, 16_000, freq=170.0)
    outside = write(tmp_path / "x.wav", y, 16_000, "wav")  # reached as ../../x.wav
    long_name = write(work / ("é" * 120 + ".wav"), y, 16_000, "wav")  # 240 bytes of name
    hidden = write(work / "..clip.wav", y, 16_000, "wav")
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    files = [Path("../../x.wav"), outside.resolve(), long_name, hidden]
    stems = {output_stem(f, None) for f in files}
    assert all("/" not in s and not s.startswith(".") and len(s.encode()) <= 200 for s in stems), stems
    opts = BatchOptions(model=str(tiny_model_dir), num_speakers=1, formats=("json", "textgrid"))
    run_batch(files[2:] + files[:1], out, opts, show_progress=False)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".TextGrid", ".csv"))
    assert written and all(p.parent == out for p in written), written
    assert len([p for p in written if p.suffix == ".json"]) == 3


def test_api_uploads_never_touch_the_disk(tiny_model_dir, monkeypatch):
    """A 3 MB upload (over Starlette's 1 MB spooling threshold) stays in memory."""
    import tempfile

    import numpy as np
    from fastapi.testclient import TestClient

    from audiogen import encode
    from ser.serve.api import APISettings, create_app

    rolled = []
    real = tempfile.SpooledTemporaryFile.rollover
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover",
                        lambda self: (rolled.append(self), real(self))[1])
    c = TestClient(create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1)))
    y = np.tile(tone(2.0, 16_000, freq=170.0), 50)  # 100 s of 16-bit audio, 3.2 MB
    r = c.post("/v1/classify", files={"file": ("long.wav", encode(y, 16_000, "wav"), "audio/wav")})
    assert r.status_code == 200, r.text
    assert rolled == []
