"""Grid search of the builtin diarizer's settings over ``../shared/data/diarization``.

    python bench/diarization_tune.py [--data DIR] [--out bench/results/diarization_tune.json]

Objective: pooled DER over all six files (collar 0.25 s, overlap scored, UEM applied,
automatic speaker count). Embeddings are computed once per (VAD, window) setting; the
cheap clustering settings are searched on top. The winning values are what
ser.diarization.BuiltinSettings ships with; the table of every setting tried is written
so that a flat optimum can be preferred over a lucky spike.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diarization_eval import DEFAULT_DATA, ROOT, load_set, score  # noqa: E402

EMBED_GRID = {"vad_threshold": [0.3], "speech_pad_s": [0.15, 0.3], "window_s": [1.0, 1.5, 2.0],
              "hop_s": [0.25, 0.5]}
ASSIGN_GRID = {"merge_similarity": [0.85, 0.875, 0.9, 0.925], "overcluster": [0, 2, 4], "prune": [0.15, 0.3],
               "smoothing_s": [0.3, 0.6]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization_tune.json")
    args = ap.parse_args()
    from ser.diarization import BuiltinSettings, assign, embed
    items = load_set(args.data)
    rows = []
    for ev in itertools.product(*EMBED_GRID.values()):
        base = replace(BuiltinSettings(), **dict(zip(EMBED_GRID, ev)))
        embs = {uri: embed(y, 16000, base) for uri, y, _, _ in items}
        for av in itertools.product(*ASSIGN_GRID.values()):
            s = replace(base, **dict(zip(ASSIGN_GRID, av)))
            hyps = {uri: assign(e, s) for uri, e in embs.items()}
            r = score(items, hyps, 0.25)
            rows.append({"settings": {**dict(zip(EMBED_GRID, ev)), **dict(zip(ASSIGN_GRID, av))},
                         "der": r["der"], "missed": r["missed"], "false_alarm": r["false_alarm"],
                         "confusion": r["confusion"], "per_file": {u: f["der"] for u, f in r["files"].items()}})
        best = min(rows, key=lambda r: r["der"])
        print(f"{dict(zip(EMBED_GRID, ev))}: best so far DER {best['der']:.3f} {best['settings']}", flush=True)
    rows.sort(key=lambda r: r["der"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"objective": "pooled DER, collar 0.25, overlap scored, UEM, auto count",
                                    "defaults": asdict(BuiltinSettings()), "rows": rows}, indent=1) + "\n")
    for r in rows[:15]:
        print(f"DER {r['der']:.3f} miss {r['missed']:.3f} FA {r['false_alarm']:.3f} conf {r['confusion']:.3f} "
              f"{r['settings']}")


if __name__ == "__main__":
    main()
