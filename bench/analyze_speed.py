"""Full analysis speed and memory: decode → diarize → emotion on long recordings of real speech.

    python bench/analyze_speed.py [--minutes 10 60] [--threads N] [--out bench/results/analyze_speed.json]

Each recording is built from real speech in ../shared (the six diarization recordings,
then RAVDESS actors taking turns with pauses, cycling through actors 01–20) and written
as 16 kHz FLAC under bench/out/. Each analysis runs in a fresh process (`ser analyze`
with JSON export), so the figures include model loading; peak RSS is the child's
``ru_maxrss``. Real-time factor = wall time / audio duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared")) / "data"


def build_recording(minutes: float, path: Path, seed: int = 0) -> dict:
    import soundfile as sf

    from ser.audio.decode import load_audio
    from ser.analysis.demo import conversation

    if path.exists():
        info = sf.info(str(path))
        return {"path": str(path), "duration_s": info.frames / info.samplerate}
    target = int(minutes * 60 * 16000)
    rng = np.random.default_rng(seed)
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=1, format="FLAC", subtype="PCM_16") as out:
        written = 0
        for wav in sorted((SHARED / "diarization").glob("*.wav")):
            y = load_audio(wav).y
            out.write(y)
            written += len(y)
        actors = sorted((SHARED / "ravdess16k").glob("Actor_*"))
        files = {a.name: sorted(a.glob("*.flac")) for a in actors}
        block = 0
        while written < target:
            a, b = rng.choice(len(actors), 2, replace=False)
            clips = []
            for k in range(10):
                actor = actors[a if k % 2 == 0 else b].name
                f = files[actor][rng.integers(len(files[actor]))]
                clips.append((load_audio(f).y, actor, None))
            y, _ = conversation(clips, seed=seed + block)
            y = y[: target - written]
            out.write(y)
            written += len(y)
            block += 1
    return {"path": str(path), "duration_s": written / 16000}


def run_analysis(path: Path, out_dir: Path, threads: int | None) -> dict:
    env = dict(os.environ, PYANNOTE_METRICS_ENABLED="0", HF_HUB_OFFLINE="1")
    if threads:
        env["SER_THREADS"] = str(threads)
    (out_dir / f"{path.stem}.json").unlink(missing_ok=True)  # else `ser analyze` resumes: skips a finished file
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-m", "ser.cli", "analyze", str(path), "--format", "json", "--out",
                        str(out_dir), "--quiet", "--device", "cpu"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"analysis failed: {r.stderr[-2000:]}")
    result = json.loads((out_dir / f"{path.stem}.json").read_text())
    return {"wall_s": wall, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "peak_rss_mib": after.ru_maxrss / 1024, "stages_s": result["provenance"]["timings_s"],
            "speakers": len(result["speakers"]), "turns": len(result["turns"]), "windows": len(result["windows"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    ap.add_argument("--threads", type=int, help="torch threads for the analysis (default: all cores)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "analyze_speed.json")
    ap.add_argument("--note", default="", help="free text stored with the figures (e.g. machine load)")
    args = ap.parse_args()
    if not (SHARED / "ravdess16k").is_dir():
        sys.exit(f"needs real speech from {SHARED} (RAVDESS and the diarization recordings)")
    work = ROOT / "bench" / "out"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in args.minutes:
        rec = build_recording(minutes, work / f"speech_{int(minutes)}min.flac")
        res = run_analysis(Path(rec["path"]), work, args.threads)
        row = {"minutes": minutes, "audio_s": rec["duration_s"], **res, "rtf": res["wall_s"] / rec["duration_s"]}
        rows.append(row)
        print(f"{minutes:g} min: wall {row['wall_s']:.1f} s, RTF {row['rtf']:.4f}, peak RSS {row['peak_rss_mib']:.0f} MiB,"
              f" stages {row['stages_s']}, {row['speakers']} speakers, {row['turns']} turns", flush=True)
    doc = {"command": "python bench/analyze_speed.py " + " ".join(sys.argv[1:]), "cpu_count": os.cpu_count(),
           "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
           "threads": args.threads or "all", "note": args.note, "runs": rows,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
