"""Score saved models on each corpus, on the classes the corpus has (the cross-corpus check of a
model that never saw the corpus), with chance level beside each figure.

    .venv/bin/python bench/cross_corpus.py --model runs/sercnn-default --model default \
        --out bench/results/cross_corpus.json

For every model and corpus (RAVDESS 01–20, ASED, EmoDB from ../shared/data), each clip is
classified and the model's choice is restricted to the corpus's classes that the model's label
set has (as leave-one-corpus-out scores a held-out corpus). The result says, per corpus, whether
the model was trained on it (from its card): a figure on a corpus the model was trained on is
*not* a generalisation figure — use the card's cross-validation and leave-one-corpus-out
figures for those.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CORPORA = {"ravdess": DATA / "ravdess16k", "ased": DATA / "ased16k", "emodb": DATA / "emodb16k"}


def trained_on(card: dict) -> set[str]:
    data = card.get("data") or {}
    if "corpora" in data:
        return {c["corpus"] for c in data["corpora"]}
    return {data["corpus"]} if data.get("corpus") else set()


def score(model_name: str, corpus: str, path: Path) -> dict:
    from ser.audio.decode import AudioLimits, load_audio
    from ser.training.datasets import read_corpus
    from ser.emotion.labels import get_label_set
    from ser.emotion.model import load_model
    from ser.training.heads import restricted_argmax
    from ser.training.train import classification_metrics

    m = load_model(model_name, device="cpu")
    ls = get_label_set(m.card.label_set)
    utts = [u for u in read_corpus(corpus, path) if ls.mapping.get(u.label) in m.labels]
    y = np.array([m.labels.index(ls.mapping[u.label]) for u in utts])
    classes = sorted(set(y.tolist()))
    probs = np.zeros((len(utts), len(m.labels)))
    t0 = time.perf_counter()
    for i, u in enumerate(utts):
        a = load_audio(u.path, limits=AudioLimits(min_duration_s=0.2))
        probs[i] = m.predict_proba(a.y, a.sr, name=str(u.path))
    secs = time.perf_counter() - t0
    restricted = classification_metrics(y, restricted_argmax(np.log(probs + 1e-12), classes), m.labels)
    free = classification_metrics(y, probs.argmax(1), m.labels)
    return {"model": m.id, "corpus": corpus, "trained_on_it": corpus in trained_on(m.card.to_dict()),
            "classes": [m.labels[k] for k in classes], "chance": 1 / len(classes), "n": len(utts),
            "uar": restricted["uar"], "accuracy": restricted["accuracy"], "macro_f1": restricted["macro_f1"],
            "uar_all_classes": free["uar"], "seconds": secs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cross_corpus.json"))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} is absent: nothing to score", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(2)
    rows = []
    for name in args.model:
        for corpus, path in CORPORA.items():
            r = score(name, corpus, path)
            rows.append(r)
            print(f"{name:<24} {corpus:<8} {'TRAINED ON' if r['trained_on_it'] else 'never saw':<10} "
                  f"UAR {r['uar']:.3f} (chance {r['chance']:.3f}, {len(r['classes'])} classes; "
                  f"all-class argmax {r['uar_all_classes']:.3f})  n={r['n']}", flush=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows,
                                          "command": " ".join(sys.argv)}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
