"""Nothing leaves the machine: the dashboard (with a full analysis in a real browser) and the
REST API (classify and analyze) run under strace, and every connect()/sendto()/sendmsg()
they make, in every thread and child process, goes to loopback or a Unix socket.

A DNS lookup would show as a connect() to the resolver, a telemetry call as a connect() to its
collector; neither is allowed by default. (Chromium is not traced: it is the user's browser.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
STRACE = shutil.which("strace")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(STRACE is None, reason="needs strace (scripts/setup.sh installs it)")]

_INET = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def _traced(cmd: list[str], log: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    with open(out, "wb") as fh:
        return subprocess.Popen([STRACE, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg",
                                 "-o", str(log), *cmd], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _destinations(log: Path) -> tuple[list[str], int]:
    """Every non-loopback internet address contacted, and how many calls named an address."""
    outside, seen = [], 0
    for line in log.read_text(errors="replace").splitlines():
        if not any(f" {call}(" in line for call in ("connect", "sendto", "sendmsg")):
            continue
        for addr in _INET.findall(line) + _INET6.findall(line):
            seen += 1
            if not (addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1")):
                outside.append(line.strip()[:200])
    return outside, seen


def _stop(strace: subprocess.Popen) -> None:
    """End the traced program (strace itself would detach and leave it running), then strace."""
    import signal
    kids = [int(p) for p in Path(f"/proc/{strace.pid}/task/{strace.pid}/children").read_text().split()] \
        if Path(f"/proc/{strace.pid}").exists() else []
    for pid in kids:
        os.kill(pid, signal.SIGTERM)
    try:
        strace.wait(30)
    except subprocess.TimeoutExpired:
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        strace.wait(30)


def test_the_trace_sees_a_connection(tmp_path):
    """The check itself: a traced program's loopback connect() is seen, and a would-be outside
    address in the log is reported (the log line is written here, no packet is sent)."""
    log, out = tmp_path / "strace.txt", tmp_path / "out.txt"
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
            "except OSError:\n    pass")
    proc = _traced([sys.executable, "-c", code], log, out)
    proc.wait(60)
    outside, seen = _destinations(log)
    assert seen >= 1 and outside == [], log.read_text()
    with open(log, "a") as fh:
        fh.write('123 connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("192.0.2.1")}, 16) = 0\n')
    assert len(_destinations(log)[0]) == 1


def _wait_port(port: int, proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, out.read_text()[-2000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("did not start: " + out.read_text()[-2000:])


@pytest.mark.skipif(not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists(),
                    reason="needs Debian's chromium (scripts/setup.sh installs it)")
def test_dashboard_and_a_full_analysis_contact_only_loopback(tmp_path):
    from playwright.sync_api import sync_playwright
    from screenshot import free_port, open_analyze_page

    port = free_port()
    log, out = tmp_path / "strace.txt", tmp_path / "app.txt"
    os.environ["SER_HISTORY_DB"] = str(tmp_path / "h.sqlite")
    try:
        proc = _traced([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)], log, out)
    finally:
        os.environ.pop("SER_HISTORY_DB")
    try:
        _wait_port(port, proc, out)
        with sync_playwright() as pw:
            browser, page = open_analyze_page(pw, f"http://127.0.0.1:{port}")
            page.locator("label").filter(has_text="Dialogue demo").first.click(timeout=60_000)
            page.get_by_text("Analysed").first.wait_for(timeout=300_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
            browser.close()
    finally:
        _stop(proc)
    outside, _ = _destinations(log)
    assert not outside, outside


def test_api_classify_and_analyze_contact_only_loopback(tmp_path):
    import httpx

    from audiogen import encode, tone
    from screenshot import free_port

    port = free_port()
    log, out = tmp_path / "strace.txt", tmp_path / "api.txt"
    proc = _traced([sys.executable, "-m", "ser.cli", "serve", "--port", str(port), "--device", "cpu"], log, out)
    try:
        _wait_port(port, proc, out)
        url = f"http://127.0.0.1:{port}"
        clip = encode(tone(3.0, 16_000, freq=170.0), 16_000, "wav")
        assert httpx.post(url + "/v1/classify", files={"file": ("a.wav", clip)}, timeout=120).status_code == 200
        r = httpx.post(url + "/v1/analyze", files={"file": ("d.wav", (ROOT / "assets" / "demo_dialogue.wav")
                                                                   .read_bytes())},
                       data={"transcribe": "true"}, timeout=300)  # the transcript stage too
        assert r.status_code == 200 and r.json()["turns"] and r.json()["words"]
    finally:
        _stop(proc)
    outside, _ = _destinations(log)
    assert not outside, outside


@pytest.mark.ray
def test_a_ray_job_contacts_only_loopback(tmp_path):
    """`ser analyze --engine ray` starting its own local Ray (GCS, raylet, workers: all traced,
    they are the run's children) contacts nothing but loopback: no usage statistics, no
    route probe towards a public address."""
    import numpy as np
    import soundfile as sf

    from ser.analysis.demo import synthesize_dialogue

    data = tmp_path / "in"
    data.mkdir()
    y = synthesize_dialogue()[0]
    for i in range(2):
        sf.write(data / f"talk{i}.flac", np.roll(y, i * 16_000)[:160_000], 16_000)
    log, out = tmp_path / "strace.txt", tmp_path / "ray.txt"
    proc = _traced([sys.executable, "-m", "ser.cli", "analyze", str(data), "--engine", "ray", "--out",
                    str(tmp_path / "out"), "--quiet"], log, out)
    try:
        proc.wait(600)
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert proc.returncode == 0, out.read_text()[-3000:]
    assert len(list((tmp_path / "out").glob("*.json"))) == 2
    outside, seen = _destinations(log)
    assert seen > 0 and not outside, outside
