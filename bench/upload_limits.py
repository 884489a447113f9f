"""Upload limits of `ser serve`, measured on raw sockets: how much of an oversized body the
server takes before it answers, and how fast.

    python bench/upload_limits.py [--limit-mb 50]

Three requests to /v1/classify: a 300 MB chunked body (bytes the client got onto the
socket before the 413 and the close: the limit plus what the kernel buffers), a
Content-Length of 300 MB with a 7-byte body (413 before reading), and a body that stops
halfway (408 after the pause limit, 2 s here). Writes bench/results/upload_limits.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
MB = 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit-mb", type=float, default=50)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "upload_limits.json")
    args = ap.parse_args()
    import httpx
    from test_api_reliability import _free_port, _multipart_head, _raw

    port = _free_port()
    env = dict(os.environ, PYANNOTE_METRICS_ENABLED="0", HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "ser.cli", "serve", "--port", str(port), "--device", "cpu",
                               "--max-upload-mb", str(args.limit_mb), "--body-timeout-s", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)

        def chunked():
            piece = os.urandom(256 * 1024)
            frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            head = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
            yield f"{len(head):x}\r\n".encode() + head + b"\r\n"
            for _ in range(300 * 4):
                yield frame

        res = {}
        for name, head, body in (("chunked_300MB", _multipart_head(port, length=None), chunked()),
                                 ("content_length_300MB", _multipart_head(port, length=300 * MB), [b"--xyz\r\n"]),
                                 ("stalled_body", _multipart_head(port, length=100_000), [b"--xyz\r\n"])):
            t0 = time.perf_counter()
            status, sent, _ = _raw(port, head, body, read_timeout=60)
            res[name] = {"status": status, "client_sent_mb": round(sent / MB, 2),
                         "seconds_to_answer": round(time.perf_counter() - t0, 3)}
        res["server_alive"] = server.poll() is None
    finally:
        server.terminate()
        server.wait(20)
    doc = {"command": "python bench/upload_limits.py " + " ".join(sys.argv[1:]), "limit_mb": args.limit_mb,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **res}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
