"""Diarization speed: a 30-s clip warm and right after a start, and 10/60-minute recordings.

    python bench/diarization_speed.py [--minutes 10 60] [--out bench/results/diarization_speed.json]

- **30-s clip** (``assets/demo_emotions.flac``, 31.9 s, 3 speakers): with the models loaded,
  median of 5 of the builtin diarizer alone and of the whole analysis (diarization +
  emotion; stage cache off so every run computes);
- **first analysis after a start**: a fresh process that starts the background warm-up as
  the API and the dashboard do (``warm_up_in_background`` + the emotion model), waits for it
  as a server idles before its first request, then times its first analysis; and the same
  without any warm-up (a one-off ``ser analyze``);
- **long recordings**: the 10- and 60-minute speech recordings of ``bench/analyze_speed.py``
  (built from ../shared), diarized in a fresh process each, once after ``warm_up`` as a server
  (optimised CAM++) and once without (a one-off command, eager CAM++): wall time, real-time
  factor, the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP = ROOT / "assets" / "demo_emotions.flac"

FIRST = r"""
import os, sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from ser.audio import load_audio
from ser.analysis.pipeline import analyze
warm = {warm}
if warm:
    from ser.diarization.backends import warm_up_in_background
    from ser.emotion import load_model
    th = warm_up_in_background()
    model = load_model("default").warm_up()
    th.join()
else:
    model = "default"
t1 = time.perf_counter()
a = analyze(load_audio({clip!r}), model=model, cache=None)
t2 = time.perf_counter()
print(json.dumps({{"start_to_ready_s": t1 - t0, "first_analysis_s": t2 - t1, "speakers": len(a.speakers)}}))
"""

LONG = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from ser.audio import load_audio
from ser.diarization import BuiltinDiarizer, warm_up
if {warm}:
    warm_up()  # as a server does at start: the optimised CAM++ (ser.diarization.campplus.optimise)
y = load_audio({path!r}).y
t = time.perf_counter()
turns = BuiltinDiarizer({kw})(y, 16000)
wall = time.perf_counter() - t
print(json.dumps({{"audio_s": len(y) / 16000, "wall_s": wall, "rtf": wall / (len(y) / 16000),
                  "speakers": len({{x.speaker for x in turns}}), "turns": len(turns),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def child(code: str) -> dict:
    env = {**os.environ, "SER_WARM_DEMO": "1", "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="*", default=[10, 60])
    ap.add_argument("--method", default="windows", help="windows (default path) or segmentation")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization_speed.json")
    args = ap.parse_args()
    from ser.audio.decode import load_audio
    from ser.diarization.backends import BuiltinDiarizer, warm_up
    from ser.emotion.model import load_model
    from ser.analysis.pipeline import analyze

    res = {"command": "python " + " ".join(sys.argv), "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "method": args.method, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    y = load_audio(CLIP).y
    warm_up()
    model = load_model("default").warm_up()
    dia = BuiltinDiarizer(method=args.method)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        dia(y, 16000)
        times.append(time.perf_counter() - t)
    full = []
    for _ in range(5):
        t = time.perf_counter()
        analyze(load_audio(CLIP), model=model, cache=None, diarizer=dia)
        full.append(time.perf_counter() - t)
    res["clip"] = {"file": CLIP.name, "audio_s": len(y) / 16000, "diarize_median_s": statistics.median(times),
                   "diarize_all_s": times, "analysis_median_s": statistics.median(full), "analysis_all_s": full}
    print(f"30-s clip: diarize {statistics.median(times):.2f} s, whole analysis {statistics.median(full):.2f} s "
          "(medians of 5, warm)")
    res["first_after_start"] = {"warmed_in_background": child(FIRST.format(root=str(ROOT), warm=True, clip=str(CLIP))),
                                "no_warm_up": child(FIRST.format(root=str(ROOT), warm=False, clip=str(CLIP)))}
    print("first analysis:", res["first_after_start"])
    res["long"] = []
    sys.path.insert(0, str(ROOT / "bench"))
    from analyze_speed import build_recording
    for m in args.minutes:
        path = ROOT / "bench" / "out" / f"speech_{m:g}min.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        build_recording(m, path)
        for warm in (True, False):  # a warmed server (optimised CAM++), a one-off command (eager)
            r = child(LONG.format(root=str(ROOT), path=str(path), kw=f"method={args.method!r}", warm=warm))
            r["minutes"], r["warmed"] = m, warm
            res["long"].append(r)
            print(f"{m:g} min{' (warmed)' if warm else ''}: diarize {r['wall_s']:.1f} s, RTF {r['rtf']:.4f}, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB, {r['speakers']} speakers")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
