"""Grid search of the builtin diarizer's clustering settings on the simulated development set.

    python bench/diarization_tune.py [--sim 40] [--out bench/results/diarization_tune.json]

Objective: pooled DER over the 40 simulated recordings (collar 0.25 s, overlap scored,
automatic speaker count), and how often the count is exact. Embeddings are computed once
(ser.diarization.BuiltinSettings' voice activity and window settings); the cheap
clustering settings are searched on top. The real shared recordings are never part of the
objective: bench/diarization_eval.py checks the chosen settings on them afterwards.
Every setting's figures are written, so a flat optimum can be preferred over a spike.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diarization_eval import ROOT, load_sim, score  # noqa: E402

# average linkage on the plain cosine (refining switched off) …
GRID = {"clustering": ["ahc"], "refine_min_speech_s": [float("inf")],
        "merge_similarity": [0.25, 0.3, 0.35, 0.4, 0.5], "min_cluster_s": [3.0, 6.0, 10.0]}
# … on the refined neighbourhood similarity (every development recording has ≥ 56 s of speech) …
REFINED = {"clustering": ["ahc"], "refine_min_speech_s": [0.0], "refine_share": [0.2, 0.3, 0.4],
           "refine_mix": [0.3, 0.5, 0.7], "refined_similarity": [0.35, 0.38, 0.4, 0.42, 0.45]}
# … and spectral clustering with the eigengap count
SPECTRAL = {"clustering": ["spectral"], "merge_similarity": [0.5, 0.6, 0.7, 0.8], "min_cluster_s": [3.0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization_tune.json")
    args = ap.parse_args()
    from ser.diarization.base import BuiltinSettings
    from ser.diarization.assign import assign
    from ser.diarization.embed import embed
    items = load_sim(args.sim, 0)
    base = BuiltinSettings()
    embs = {it.uri: embed(it.y, 16000, base) for it in items}
    rows = []
    for grid in (GRID, REFINED, SPECTRAL):
        for vals in itertools.product(*grid.values()):
            s = replace(base, **dict(zip(grid, vals)))
            r = score(items, {it.uri: assign(embs[it.uri], s) for it in items}, 0.25)
            shown = {k: (None if v == float("inf") else v) for k, v in zip(grid, vals)}  # JSON has no inf
            rows.append({**shown, "der": r["der"], "missed": r["missed"],
                         "false_alarm": r["false_alarm"], "confusion": r["confusion"],
                         "count_exact": r["count_exact"], "count_error_mean": r["count_error_mean"]})
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"objective": "pooled DER, simulated dev set (seeds 0-39), collar 0.25, auto count",
                                    "defaults": asdict(base), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
