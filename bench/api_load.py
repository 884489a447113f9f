"""Load test of the REST API on loopback: N concurrent clients posting 4-second clips.

    python bench/api_load.py [--clients 20] [--seconds 60] [--workers 2] [--queue 4]
    python bench/api_load.py --mix      # classify, analyze, corrupt and 7.1 files, interleaved

With ``--mix`` each client cycles through: classify the 4-s clip, analyze a 30-s
two-speaker recording (several analyses run at once), classify and analyze a 7.1 M4A,
classify a float WAV whose header claims 9 channels, and classify random bytes; every
answer must have its kind's status (200, or 400 for the broken ones), and the server
must be alive at the end. Figures go to bench/results/api_load_mix.json.

Starts `ser serve` in a subprocess, then runs a bounded asyncio client (httpx): each
client posts a 4-second clip to /v1/classify, waits for the answer, and on 429 waits
the Retry-After the server asked for. Reports status counts (5xx must be zero),
throughput of answered classifications, p50/p95/p99 latency of 200 answers and of all
answers, and the server's RSS sampled every second (start, end, max) to show memory
stays flat. Figures go to bench/results/api_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _clip() -> bytes:
    """A real 4-second speech clip: a RAVDESS file when ../shared is there, else espeak-ng speech."""
    import soundfile as sf
    import io

    from ser.audio.decode import load_audio
    rav = ROOT.parent / "shared" / "data" / "ravdess16k" / "Actor_01"
    if rav.is_dir():
        y = load_audio(sorted(rav.glob("*.flac"))[10]).y
    else:
        from audiogen import speak
        y = speak("I cannot believe you did that again, after everything we said.")
    y = np.resize(y, 4 * 16000).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _mix_jobs(clip: bytes) -> list[tuple[str, str, bytes, int]]:
    """(endpoint, file name, bytes, expected status) for --mix."""
    import io

    import soundfile as sf

    from ser.audio.decode import load_audio
    from ser.audio.fuzz import encode
    y = load_audio(clip).y
    dialogue = load_audio(ROOT / "assets" / "demo_dialogue.wav").y
    speech30 = np.resize(dialogue, 30 * 16000)
    buf = io.BytesIO()
    sf.write(buf, speech30, 16000, format="WAV", subtype="PCM_16")
    surround = encode(y, 16000, "m4a", channels=8, channel_gains=True)
    nine = bytearray(encode(y, 16000, "wav", subtype="FLOAT"))
    nine[22:24] = (9).to_bytes(2, "little")
    junk = np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    return [("/v1/classify", "clip.wav", clip, 200), ("/v1/analyze", "talk30s.wav", buf.getvalue(), 200),
            ("/v1/classify", "surround.m4a", surround, 200), ("/v1/analyze", "surround.m4a", surround, 200),
            ("/v1/classify", "nine-channels.wav", bytes(nine), 400), ("/v1/classify", "junk.wav", junk, 400)]


async def _run(url: str, clients: int, seconds: float, clip: bytes, pid: int,
               jobs: list[tuple[str, str, bytes, int]] | None = None) -> dict:
    import httpx

    stop = time.perf_counter() + seconds
    lat_ok: list[float] = []
    lat_all: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    rss: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    jobs = jobs or [("/v1/classify", "clip.wav", clip, 200)]
    by_kind: dict[str, dict[str, int]] = {}
    unexpected: list[str] = []

    async def client(i: int, http: httpx.AsyncClient) -> None:
        k = i
        while time.perf_counter() < stop:
            path, name, data, want = jobs[k % len(jobs)]
            k += 1
            t = time.perf_counter()
            try:
                r = await http.post(f"{url}{path}", files={"file": (name, data, "application/octet-stream")})
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            dt = time.perf_counter() - t
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            kind = by_kind.setdefault(f"{path} {name}", {})
            kind[str(r.status_code)] = kind.get(str(r.status_code), 0) + 1
            lat_all.append(dt)
            if r.status_code == 200 and path == "/v1/classify":
                lat_ok.append(dt)
            if r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            elif r.status_code != want:
                unexpected.append(f"{path} {name}: {r.status_code} {r.text[:120]}")

    async def sampler() -> None:
        while time.perf_counter() < stop:
            rss.append((time.perf_counter() - t0, _rss_mib(pid)))
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(sampler(), *(client(i, http) for i in range(clients)))
    wall = time.perf_counter() - t0

    def pct(v: list[float]) -> dict:
        return {f"p{q}": round(float(np.percentile(v, q)) * 1000, 1) for q in (50, 95, 99)} if v else {}

    values = [m for _, m in rss]
    return {"wall_s": round(wall, 1), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500), "client_errors": len(errors),
            "by_request": by_kind, "unexpected_status": len(unexpected), "unexpected_examples": unexpected[:5],
            "classified_per_s": round(len(lat_ok) / wall, 2), "latency_ms_200": pct(lat_ok),
            "latency_ms_all": pct(lat_all),
            "server_rss_mib": {"start": round(values[0], 1), "end": round(values[-1], 1), "max": round(max(values), 1),
                               "samples": [round(m, 1) for m in values]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--queue", type=int, default=None)
    ap.add_argument("--mix", action="store_true", help="interleave analyze, corrupt and multichannel uploads")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/api_load[_mix].json")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "ser.cli", "serve", "--port", str(port), "--device", "cpu",
           "--workers", str(args.workers)] + (["--queue", str(args.queue)] if args.queue is not None else [])
    env = dict(os.environ, PYANNOTE_METRICS_ENABLED="0", HF_HUB_OFFLINE="1")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start: " + server.stderr.read().decode()[-2000:])
        clip = _clip()
        httpx.post(f"{url}/v1/classify", files={"file": ("warm.wav", clip, "audio/wav")}, timeout=120)  # load model
        res = asyncio.run(_run(url, args.clients, args.seconds, clip, server.pid,
                               _mix_jobs(clip) if args.mix else None))
        res["server_alive_at_end"] = server.poll() is None
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    doc = {"command": "python bench/api_load.py " + " ".join(sys.argv[1:]), "clients": args.clients,
           "seconds": args.seconds, "workers": args.workers, "queue": args.queue if args.queue is not None
           else 2 * args.workers, "mix": args.mix, "clip_s": 4.0, "cpu_count": os.cpu_count(), "note": args.note,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **res}
    args.out = args.out or ROOT / "bench" / "results" / ("api_load_mix.json" if args.mix else "api_load.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "server_rss_mib"}, indent=1))
    print("server RSS MiB:", {k: v for k, v in res["server_rss_mib"].items() if k != "samples"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
