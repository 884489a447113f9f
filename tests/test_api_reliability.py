"""A real `ser serve` process (uvicorn on loopback) under hostile uploads and mixed load.

Upload limits hold while the body streams in (bytes counted on the client's socket), and
concurrent analyses, corrupt and multichannel files never cost a 5xx or the process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from audiogen import encode, tone

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from screenshot import free_port as _free_port  # noqa: E402

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ser serve` with the shipped model, 2 workers, a 2 MB upload limit, a 1.5 s body pause limit
    and a 2 s limit for a request's head."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "SER_API_HEADER_TIMEOUT_S": "2"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "ser.cli", "serve", "--port", str(port), "--device", "cpu",
                                 "--workers", "2", "--queue", "8", "--max-upload-mb", "2", "--body-timeout-s", "1.5"],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
        assert proc.poll() is None, log.read_text()[-2000:]
    yield {"url": url, "port": port, "proc": proc, "log": log}
    proc.terminate()
    proc.wait(20)


def _raw(port: int, head: bytes, body_chunks, *, read_timeout: float = 10.0) -> tuple[int | None, int, bytes]:
    """Send ``head`` then the chunks on a raw socket until the server answers or closes; returns
    (HTTP status or None, body bytes the server took off the socket before that, response bytes)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(read_timeout)
    s.sendall(head)
    sent, reply = 0, b""
    s.setblocking(False)
    try:
        for chunk in body_chunks:
            view = memoryview(chunk)
            while view:
                try:
                    n = s.send(view)
                    view, sent = view[n:], sent + n
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    raise StopIteration
                try:
                    data = s.recv(65536)
                    if not data:
                        raise StopIteration
                    reply += data
                    if b"\r\n\r\n" in reply:
                        raise StopIteration
                except BlockingIOError:
                    time.sleep(0.0005) if view else None
    except StopIteration:
        pass
    s.setblocking(True)
    s.settimeout(read_timeout)
    try:  # the error answers close the connection: read to the end
        while True:
            data = s.recv(65536)
            if not data:
                break
            reply += data
    except (OSError, socket.timeout):
        pass
    s.close()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else None
    return status, sent, reply


def _multipart_head(port: int, *, length: int | None) -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{framing}"
            "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode()


def test_lying_content_length_gets_413_at_once(server):
    t0 = time.perf_counter()
    status, _, reply = _raw(server["port"], _multipart_head(server["port"], length=300 * MB), [b"--xyz\r\n"])
    assert status == 413 and b"over the 2 MB limit" in reply
    assert time.perf_counter() - t0 < 1.0


def test_300_mb_chunked_body_is_cut_off_just_over_the_limit(server):
    def chunks():
        piece = os.urandom(256 * 1024)
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        head = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
        yield f"{len(head):x}\r\n".encode() + head + b"\r\n"
        for _ in range(300 * 4):  # 300 MB
            yield frame

    t0 = time.perf_counter()
    status, sent, reply = _raw(server["port"], _multipart_head(server["port"], length=None), chunks())
    assert status == 413 and b"over the 2 MB limit" in reply, reply[:300]
    # what left the client: the 2 MB limit plus what the kernel's socket buffers hold, never the 300 MB
    assert sent < 12 * MB, sent / MB
    assert time.perf_counter() - t0 < 10


def test_stalled_body_gets_408_after_the_pause_limit(server):
    t0 = time.perf_counter()
    status, _, reply = _raw(server["port"], _multipart_head(server["port"], length=100_000), [b"--xyz\r\n"])
    waited = time.perf_counter() - t0
    assert status == 408 and b"stalled" in reply
    assert 1.4 < waited < 5


def test_a_dripping_body_gets_408(server):
    """Issue 33 item 7: a byte every 0.3 s never stalls for the pause limit, and would hold a worker
    for as long as the client likes; after the limit, a body under 1 KiB/s on average is refused."""
    t0 = time.perf_counter()

    def drip():
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(40):
            time.sleep(0.3)
            yield b"x"

    status, _, reply = _raw(server["port"], _multipart_head(server["port"], length=100_000), drip())
    assert status == 408 and b"too slowly" in reply, reply[:300]
    assert time.perf_counter() - t0 < 5


def _closed_after(port: int, trickle: bytes, every_s: float) -> float:
    """Seconds until the server closes a connection that sends ``trickle`` a byte every ``every_s``
    (nothing at all when empty), at most 30."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(every_s if trickle else 30)
    t0 = time.perf_counter()
    try:
        for i in range(10_000):
            if trickle:
                s.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
            try:
                if s.recv(1024) == b"":
                    break
            except socket.timeout:
                pass
            if time.perf_counter() - t0 > 30:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    return time.perf_counter() - t0


def test_idle_and_header_drip_connections_are_closed(server):
    """Issue 33 item 7: a connection that sends nothing, and one that sends its request line a byte
    at a time, stayed open past 80 s; the head must be in within the limit (2 s here)."""
    assert 1.5 < _closed_after(server["port"], b"", 0) < 5
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server['port']}\r\nX-Pad: {'a' * 200}\r\n".encode()
    assert 1.5 < _closed_after(server["port"], head, 0.2) < 5


def test_server_still_answers_after_the_refusals(server):
    import httpx
    r = httpx.post(server["url"] + "/v1/classify", files={"file": ("a.wav", encode(tone(2.0), 16_000, "wav"))},
                   timeout=60)
    assert r.status_code == 200 and server["proc"].poll() is None


@pytest.mark.slow
def test_mixed_load_no_death_no_5xx(server):
    """8 clients for 20 s mixing classify, analyze of real speech, corrupt and 7.1 files (the
    20-client, 60-second version is bench/api_load.py --mix)."""
    import httpx

    speech = (ROOT / "assets" / "demo_dialogue.wav").read_bytes()
    clip = encode(tone(3.0, 16_000, freq=170.0), 16_000, "wav")
    surround = encode(tone(3.0, 16_000), 16_000, "m4a", channels=8)
    rng = np.random.default_rng(0)
    corrupt = bytearray(encode(tone(2.0), 16_000, "wav", subtype="FLOAT"))
    corrupt[22:24] = (9).to_bytes(2, "little")  # a float WAV claiming 9 channels
    junk = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    jobs = [("/v1/classify", "clip.wav", clip, 200), ("/v1/analyze", "dialogue.wav", speech, 200),
            ("/v1/classify", "surround.m4a", surround, 200), ("/v1/analyze", "surround.m4a", surround, 200),
            ("/v1/classify", "bad.wav", bytes(corrupt), None), ("/v1/classify", "junk.wav", junk, 400)]
    statuses: dict[int, int] = {}
    wrong: list = []
    stop = time.time() + 20

    def client(k: int) -> None:
        with httpx.Client(base_url=server["url"], timeout=120) as http:
            i = k
            while time.time() < stop:
                path, name, data, want = jobs[i % len(jobs)]
                i += 1
                r = http.post(path, files={"file": (name, data)})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 429:
                    time.sleep(float(r.headers.get("Retry-After", 1)))
                elif r.status_code >= 500 or (want and r.status_code != want):
                    wrong.append((path, name, r.status_code, r.text[:200]))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server["proc"].poll() is None, server["log"].read_text()[-2000:]
    assert not wrong, wrong[:5]
    assert statuses.get(200, 0) >= 10 and not any(s >= 500 for s in statuses), statuses


def test_the_api_server_runs_analyses_under_the_thread_policy(server):
    """`ser serve` is an entry point of its own: its analyses choose their torch threads from the
    free cores (ser.threads)."""
    import httpx

    r = httpx.post(server["url"] + "/v1/analyze", files={"file": ("a.wav", encode(tone(3.0), 16_000, "wav"))},
                   timeout=120)
    assert r.status_code == 200, r.text
    threads = r.json()["provenance"]["threads"]
    assert threads["mode"] == "adaptive" and 1 <= threads["torch"] <= (os.cpu_count() or 1), threads
