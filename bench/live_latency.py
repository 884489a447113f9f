"""Latency of live scoring: from a window's last sample arriving to its probabilities being
ready for display, and the worker's CPU use. Figures go to bench/results/live_latency.json.

    .venv/bin/python bench/live_latency.py [--seconds 60] [--model default]

Real speech is pushed into :class:`ser.serve.live.LiveScorer` the way the dashboard's WebRTC
callback pushes it: 20 ms frames of 48 kHz int16, paced in real time by the clock. Speech
is RAVDESS actors 01-20 with 0.3-2 s pauses between clips when ../shared is present, else
the project's demo dialogue looped. Settings: the Live page's defaults (2 s window, 0.5 s
hop, silero threshold 0.5).

Four runs: the child-process worker (what the page uses) and the in-process thread worker,
each with the parent idle and with one busy pure-Python thread in the parent (what the
Streamlit server's page reruns and WebRTC stack do to the GIL). Worker CPU is the worker's
own CPU time (the child process, or the worker thread) over the audio's duration.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "live_latency.json"


def speech(seconds: float) -> tuple[np.ndarray, str]:
    """About ``seconds`` of real speech with natural pauses, 16 kHz."""
    from ser.audio.decode import load_audio

    rav = ROOT.parent / "shared" / "data" / "ravdess16k"
    rng = np.random.default_rng(0)
    if rav.is_dir():
        files = sorted(rav.glob("Actor_*/*.flac"))
        rng.shuffle(files)
        parts, n = [], 0
        for f in files:
            y = load_audio(f).y
            gap = np.zeros(int(rng.uniform(0.3, 2.0) * 16_000), np.float32)
            parts += [y, gap]
            n += len(y) + len(gap)
            if n >= seconds * 16_000:
                break
        return np.concatenate(parts)[: int(seconds * 16_000)], "RAVDESS actors 01-20, random clips with 0.3-2 s pauses"
    y = load_audio(ROOT / "assets" / "demo_dialogue.wav").y
    return np.tile(y, int(seconds * 16_000) // len(y) + 1)[: int(seconds * 16_000)], "assets/demo_dialogue.wav looped"


def run(model, y16: np.ndarray, *, worker: str, busy: bool) -> dict:
    import soxr

    from ser.serve.live import LiveScorer

    y48 = (np.clip(soxr.resample(y16, 16_000, 48_000), -1, 1) * 32767).astype(np.int16)
    scorer = LiveScorer(model, worker=worker)
    scorer.push(np.zeros(960, np.int16), 48_000)  # the thread worker loads its VAD on the first frame
    scorer.wait_ready(120)
    scorer.reset()
    stop = threading.Event()

    def hog() -> None:  # a pure-Python thread that wants the GIL all the time
        x = 0
        while not stop.is_set():
            for i in range(2000):
                x += i * i

    if busy:
        threading.Thread(target=hog, daemon=True).start()
    ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for k, i in enumerate(range(0, len(y48), 960)):
        delay = t0 + k * 0.02 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        scorer.push(y48[i:i + 960], 48_000)
    scorer.stop()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    ups, st = scorer.updates(), scorer.stats()
    scorer.close()
    lat = np.array([u.latency_s for u in ups]) * 1000
    scored = np.array([u.latency_s for u in ups if not u.no_speech]) * 1000
    audio_s = len(y16) / 16_000
    return {
        "worker": worker, "parent": "one busy Python thread" if busy else "idle",
        "audio_s": round(audio_s, 1), "wall_s": round(wall, 1), "updates": len(ups), "scored": int(st.scored),
        "no_speech": int(st.no_speech), "dropped_s": st.dropped_s, "skipped_s": st.skipped_s,
        "latency_ms": {"median": round(float(np.median(lat)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "p99": round(float(np.percentile(lat, 99)), 1), "max": round(float(lat.max()), 1)},
        "latency_scored_windows_ms": {"median": round(float(np.median(scored)), 1),
                                      "p95": round(float(np.percentile(scored, 95)), 1)} if scored.size else {},
        "worker_cpu_s": round(st.worker_cpu_s, 2),
        "worker_cpu_percent_of_one_core": round(100 * st.worker_cpu_s / audio_s, 1),
        "parent_process_cpu_s": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", nargs="+", default=["process", "thread"], choices=["process", "thread"])
    ap.add_argument("--note", default="", help="free text stored with the figures (e.g. the machine's load)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    import torch

    from ser.emotion.model import load_model

    model = load_model(args.model, device="cpu")
    y, source = speech(args.seconds)
    runs = []
    for worker in args.workers:
        for busy in (False, True):
            r = run(model, y, worker=worker, busy=busy)
            print(json.dumps(r), flush=True)
            runs.append(r)
    out = {"benchmark": "live scoring latency (last sample arrived -> probabilities ready)",
           "command": "python bench/live_latency.py " + " ".join(sys.argv[1:]), "source": source,
           "settings": {"window_s": 2.0, "hop_s": 0.5, "frames": "20 ms, 48 kHz int16, real-time pace"},
           "model": model.id, "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                                          "torch": torch.__version__, "platform": platform.platform()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "note": args.note, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
