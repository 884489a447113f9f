"""Speed of `ser predict` and of model inference; figures written to bench/results/.

    .venv/bin/python bench/predict_speed.py [--model default] [--runs 5]

1. Wall time of `ser predict clip.wav` in a fresh process (4-second clip, median of
   --runs), the whole thing: interpreter start, imports, model load, decode, predict.
2. Inference alone on ONE CPU thread for every architecture (random weights are
   enough for timing, the shipped model for the default): real-time factor for a
   4-second clip, median of 50 runs after warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def speech_clip(path: Path) -> str:
    """A real 4-second speech clip when ../shared is present, else a generated voice-like one."""
    import numpy as np
    import soundfile as sf

    from ser.audio.decode import load_audio

    rav = ROOT.parent / "shared" / "data" / "ravdess16k" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    if rav.exists():
        y = load_audio(rav).y
        y = np.tile(y, 2)[: 4 * 16_000]
        source = f"RAVDESS {rav.name}, looped to 4 s"
    else:
        from audiogen import tone

        y = tone(4.0, 16_000, freq=160.0)
        source = "generated harmonic tone, 4 s"
    sf.write(path, y, 16_000, subtype="PCM_16")
    return source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    import torch

    from ser.emotion.features import FeatureConfig
    from ser.emotion.nets import ARCHITECTURES, build_model, count_parameters
    from ser.emotion.model import load_model

    out: dict = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}",
                 "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.wav"
        out["clip"] = speech_clip(clip)
        ser_bin = Path(sys.executable).parent / "ser"
        cmd = [str(ser_bin) if ser_bin.exists() else sys.executable, *([] if ser_bin.exists() else ["-m", "ser.cli"]),
               "predict", "--model", args.model, "--device", "cpu", str(clip)]
        walls = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(r.stderr)
        out["predict_fresh_process_s"] = {"median": statistics.median(walls), "max": max(walls), "runs": walls,
                                          "command": "ser predict --model %s --device cpu clip.wav" % args.model}

    torch.set_num_threads(1)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(4 * 16_000).astype(np.float32) * 0.1)[None]
    speeds = {}
    for arch in ARCHITECTURES:
        if arch == args.model:
            continue
        net = build_model(arch, FeatureConfig(), 8).eval()
        speeds[arch] = _time(net, torch.randn(1, 260) if arch == "logreg" else x, count_parameters(net))
    m = load_model(args.model, device="cpu")
    speeds[f"{args.model} ({m.card.architecture}, shipped weights)"] = _time(m.net, x, count_parameters(m.net))
    out["inference_one_thread_4s_clip"] = speeds
    if "logreg" in speeds:
        from ser.emotion.features import pooled_statistics

        y = x[0].numpy()
        pooled_statistics(y, 16_000)
        t0 = time.perf_counter()
        for _ in range(5):
            pooled_statistics(y, 16_000)
        fe_ms = (time.perf_counter() - t0) / 5 * 1000
        lr = speeds["logreg"]
        lr["feature_extraction_ms"] = fe_ms
        lr["ms_per_4s_clip"] += fe_ms  # the model is useless without its features: count them
        lr["x_real_time"] = 4000.0 / lr["ms_per_4s_clip"]
    dest = ROOT / "bench" / "results" / "predict_speed.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def _time(net, x, params: int, n: int = 50) -> dict:
    import torch

    with torch.inference_mode():
        for _ in range(5):
            net(x)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"parameters": params, "ms_per_4s_clip": med * 1000, "x_real_time": 4.0 / med}


if __name__ == "__main__":
    main()
