"""How the bundled model reads the "emotions in conversation" demo (assets/demo_emotions.*).

For each reference turn: the emotion windows whose centre falls in it, their probabilities
averaged, the top emotion compared with the intended one. Also the speakers the diarizer found.
The demo's actors are in the model's training data: this checks the demo, not generalisation.

    python bench/emotion_demo.py [--model default] [--out bench/results/emotion_demo.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def score(model: str = "default", adapt: str = "none") -> dict:
    from ser.analysis.pipeline import analyze

    meta = json.loads((ROOT / "assets" / "demo_emotions.json").read_text())
    a = analyze(ROOT / "assets" / "demo_emotions.flac", model=model, device="cpu", cache=None, adapt=adapt)
    rows = []
    for t in meta["turns"]:
        ps = [np.array([w.probabilities[k] for k in a.labels]) for w in a.windows
              if t["start_s"] <= (w.start_s + w.end_s) / 2 <= t["end_s"]]
        got = a.labels[int(np.mean(ps, 0).argmax())] if ps else None
        rows.append({**t, "model": got, "match": got == t["emotion"]})
    return {"model": a.provenance["model"]["id"], "adapt": adapt, "turns": rows,
            "matches": sum(r["match"] for r in rows), "of": len(rows),
            "speakers_found": len({t.speaker for t in a.turns}), "speakers_true": len({t["speaker"] for t in meta["turns"]})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "emotion_demo.json"))
    args = ap.parse_args()
    res = {m: score(args.model, m) for m in ("none", "speaker")}
    for m, r in res.items():
        print(f"adapt={m}: {r['matches']}/{r['of']} turns match the intended emotion; "
              f"{r['speakers_found']} speakers found of {r['speakers_true']}")
        for t in r["turns"]:
            print(f"  {t['start_s']:6.2f}-{t['end_s']:6.2f} {t['speaker']} intended {t['emotion']:9s} model {t['model']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
