"""Server side of the Analyze view: figure build time and payload for 1-, 10- and 60-minute recordings.

    python bench/view_payload.py [--minutes 1 10 60]

Uses the recordings bench/analyze_speed.py builds from real speech (bench/out/), runs the
analysis, then times `ser.analysis.figures.analysis_figure` (waveform envelope, mel spectrogram
with F0 and intensity, speaker lanes, emotion overlay) and its JSON serialisation, and
records the payload size the browser receives. The browser-side drawing time is not
measured here. Figures go to bench/results/view_payload.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "view_payload.json")
    args = ap.parse_args()
    from analyze_speed import build_recording

    from ser.audio.decode import load_audio
    from ser.analysis.figures import SpectrogramSettings, analysis_figure
    from ser.analysis.pipeline import analyze

    rows = []
    for minutes in args.minutes:
        rec = build_recording(minutes, ROOT / "bench" / "out" / f"speech_{minutes:g}min.flac")
        audio = load_audio(rec["path"])
        t0 = time.perf_counter()
        a = analyze(audio, device="cpu", cache=None)
        t_an = time.perf_counter() - t0
        t0 = time.perf_counter()
        fig = analysis_figure(audio.y, audio.sr, a, spec=SpectrogramSettings(pitch=True, intensity=True))
        t_fig = time.perf_counter() - t0
        t0 = time.perf_counter()
        payload = fig.to_json().encode()
        t_json = time.perf_counter() - t0
        t0 = time.perf_counter()
        zoom = analysis_figure(audio.y, audio.sr, a, spec=SpectrogramSettings(pitch=True, intensity=True),
                               t0=a.duration_s / 2, t1=a.duration_s / 2 + 30.0)
        t_zoom = time.perf_counter() - t0
        row = {"minutes": minutes, "analysis_s": round(t_an, 2), "figure_s": round(t_fig, 2),
               "json_s": round(t_json, 3), "payload_mb": round(len(payload) / 1e6, 3), "turns": len(a.turns),
               "windows": len(a.windows), "zoom_30s_figure_s": round(t_zoom, 2),
               "zoom_30s_payload_mb": round(len(zoom.to_json().encode()) / 1e6, 3)}
        rows.append(row)
        print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python bench/view_payload.py " + " ".join(sys.argv[1:]),
                                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": rows},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
