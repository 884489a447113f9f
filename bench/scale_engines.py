"""Batch engines on one machine: hours of audio analysed per wall-clock hour, for
``--engine local --jobs 1``, ``--jobs 2`` and ``--engine ray``, on the same 30-minute corpus.

    .venv/bin/python bench/scale_engines.py [--files 12] [--minutes-per-file 2.5] \
        [--out bench/results/scale_engines.json]

The corpus is built from ../shared (RAVDESS actors 01–20 taking turns in pairs, 0.3–1.2 s
pauses, each file a different seeded draw) under bench/out/scale_corpus/. Each engine runs
in a fresh process into an empty output folder (model loading included). For Ray: a local
Ray started by the run itself (2 actors × 1 CPU on this 2-core machine), its overhead per
file = (Ray wall − local --jobs 2 wall) / files, and the peak RSS of each actor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared")) / "data"
ENV = dict(os.environ, PYANNOTE_METRICS_ENABLED="0", HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")


def build_corpus(folder: Path, files: int, minutes: float) -> float:
    import soundfile as sf

    from ser.audio.decode import load_audio
    from ser.analysis.demo import conversation

    folder.mkdir(parents=True, exist_ok=True)
    actors = sorted((SHARED / "ravdess16k").glob("Actor_*"))
    clips = {a.name: sorted(a.glob("*.flac")) for a in actors}
    total = 0.0
    for i in range(files):
        path = folder / f"session{i:02d}.flac"
        if not path.exists():
            rng = np.random.default_rng(100 + i)
            target, parts, block = int(minutes * 60 * 16000), [], 0
            while sum(len(p) for p in parts) < target:
                a, b = rng.choice(len(actors), 2, replace=False)
                turn = [(load_audio(clips[actors[a if k % 2 == 0 else b].name][rng.integers(60)]).y,
                         actors[a if k % 2 == 0 else b].name, None) for k in range(10)]
                parts.append(conversation(turn, seed=1000 * i + block)[0])
                block += 1
            sf.write(path, np.concatenate(parts)[:target], 16000, subtype="PCM_16")
        info = sf.info(str(path))
        total += info.frames / info.samplerate
    return total


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return wall, r.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--minutes-per-file", type=float, default=2.5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale_engines.json"))
    args = ap.parse_args()
    corpus = ROOT / "bench" / "out" / "scale_corpus"
    audio_s = build_corpus(corpus, args.files, args.minutes_per_file)
    print(f"corpus: {args.files} files, {audio_s / 60:.1f} min", flush=True)
    results = {}
    for name, extra in (("local --jobs 1", ["--jobs", "1"]), ("local --jobs 2", ["--jobs", "2"])):
        out = ROOT / "bench" / "out" / f"scale_{name.split()[-1]}"
        shutil.rmtree(out, ignore_errors=True)
        wall, _ = run([sys.executable, "-m", "ser.cli", "analyze", str(corpus), "--out", str(out), "--quiet",
                       "--format", "json", *extra])
        results[name] = {"wall_s": wall, "audio_hours_per_hour": audio_s / wall}
        print(name, results[name], flush=True)
    out = ROOT / "bench" / "out" / "scale_ray"
    shutil.rmtree(out, ignore_errors=True)
    code = ("import json, sys; from pathlib import Path; from ser.serve.batch import BatchOptions; "
            "from ser.cli import expand_inputs; from ser.serve.scale import run_batch_ray; "
            f"files, roots = expand_inputs([{str(corpus)!r}]); "
            f"r = run_batch_ray(files, {str(out)!r}, BatchOptions(formats=('json',)), roots=roots, show_progress=False); "
            "print(json.dumps(r))")
    wall, stdout = run([sys.executable, "-c", code])
    r = json.loads(stdout.strip().splitlines()[-1])
    results["ray (local, 2 actors x 1 CPU)"] = {
        "wall_s": wall, "audio_hours_per_hour": audio_s / wall, "actor_peak_rss_mib": r["actor_peak_rss_mib"],
        "overhead_per_file_s_vs_jobs2": (wall - results["local --jobs 2"]["wall_s"]) / args.files}
    print("ray", results["ray (local, 2 actors x 1 CPU)"], flush=True)
    same = all(json.loads((out / p.name).read_text())["turns"] == json.loads(p.read_text())["turns"]
               for p in (ROOT / "bench" / "out" / "scale_1").glob("*.json"))
    Path(args.out).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}", "files": args.files, "audio_s": audio_s,
        "engines": results, "ray_turns_equal_local": same,
        "command": " ".join([Path(sys.executable).name, *sys.argv])}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
