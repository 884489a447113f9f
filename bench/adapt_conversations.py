"""Adapting an analysis to its own recording, on simulated conversations of labelled acted clips.

    python bench/adapt_conversations.py [--n 30] [--moods 2 1]

Each conversation comes from ``ser.diarization.simulate`` (seeds 7000+; 2–7 speakers of one
shared corpus, rooms, noise, 0–20 % overlap). ``--moods``: how many of their emotions each
speaker's clips come from (2: a speaker changes mood once or twice; 1: every speaker holds one
emotion throughout — the case where centring a speaker on themselves would erase it, and the
guard must fall back). The pipeline runs as users run it (builtin diarizer, automatic count,
2-s windows, 1-s hop) with ``adapt="none"``, ``"speaker"`` (each diarized speaker centred on
themselves) and ``"recording"`` (the whole recording as one group), on the same diarization. Every emotion window whose centre lies in exactly one reference utterance
is scored against that utterance's emotion, the model choosing among the corpus's classes.

**In-domain**: every shared corpus is in the shipped model's training data, so this says
whether adaptation helps or hurts *in a conversation* (overlapping windows of one speaker, one
or two moods, rooms and noise) — not how much it gains on a new corpus (that is
the card's leave-one-corpus-out figure). Figures go to bench/results/adapt_conversations.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared")) / "data"
MODES = ("none", "speaker", "recording")


def labelled(pool, seed: int, settings):
    """The simulated conversation and, per reference utterance (in ``sim.turns`` order), its emotion."""
    from ser.diarization.simulate import _clip, simulate

    called: list[Path] = []

    def clip(path: Path) -> np.ndarray:
        called.append(path)
        return _clip(path)

    sim = simulate(pool, seed, settings, clip=clip)
    corpus = sim.info["corpus"]
    owner = {str(p): f"{corpus}:{spk}" for spk, paths in pool[corpus].items() for p in paths}
    per_spk: dict[str, list[str]] = {}
    for p in called:  # a speaker's utterances are laid out in the order they were drawn
        per_spk.setdefault(owner[str(p)], []).append(pool.labels[str(p)])
    emotions: list[str] = [""] * len(sim.turns)
    drawn: dict[str, int] = {}
    for i in sorted(range(len(sim.turns)), key=lambda i: (sim.turns[i].speaker, sim.turns[i].start_s)):
        spk = sim.turns[i].speaker
        emotions[i] = per_spk[spk][drawn.get(spk, 0)]
        drawn[spk] = drawn.get(spk, 0) + 1
    return sim, emotions


def score(analysis, ref, emotions, classes: list[str]) -> tuple[list[int], list[int]]:
    """(true, predicted) class indices of the windows whose centre lies in exactly one reference utterance."""
    labels = analysis.labels
    idx = [labels.index(c) for c in classes]
    yt, yp = [], []
    for w in analysis.windows:
        c = (w.start_s + w.end_s) / 2
        inside = [i for i, t in enumerate(ref) if t.start_s <= c < t.end_s]
        if len(inside) != 1 or emotions[inside[0]] not in classes:
            continue
        p = np.array([w.probabilities[labels[k]] for k in idx])
        yt.append(classes.index(emotions[inside[0]]))
        yp.append(int(np.argmax(p)))
    return yt, yp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="conversations per mood setting")
    ap.add_argument("--moods", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "adapt_conversations.json")
    args = ap.parse_args()
    import soundfile as sf
    from sklearn.metrics import balanced_accuracy_score

    from ser.analysis.pipeline import StageCache, analyze
    from ser.audio.decode import load_audio
    from ser.diarization.simulate import SimSettings, speaker_pool
    from ser.emotion.model import load_model

    model = load_model("default", device="cpu")
    pool = speaker_pool(SHARED)
    results = {"command": "python bench/adapt_conversations.py " + " ".join(sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "protocol": __doc__.split("\n\n")[1:3],
               "settings": {}}
    for moods in args.moods:
        settings = SimSettings(moods=moods)
        rows = []
        pooled = {m: {} for m in MODES}
        for i in range(args.n):
            seed = 7000 + 100 * moods + i
            t0 = time.time()
            sim, emotions = labelled(pool, seed, settings)
            corpus = sim.info["corpus"]
            classes = sorted({pool.labels[str(p)] for ps in pool[corpus].values() for p in ps} & set(model.labels))
            buf = io.BytesIO()
            sf.write(buf, sim.y, 16000, format="WAV", subtype="FLOAT")
            audio = load_audio(buf.getvalue(), name=f"{sim.uri}.wav")
            cache = StageCache(max_items=16)
            row = {"seed": seed, "corpus": corpus, "speakers": sim.info["speakers"], "duration_s": sim.info["duration_s"]}
            for mode in MODES:
                a = analyze(audio, model=model, cache=cache, adapt=mode, name=sim.uri)
                yt, yp = score(a, sim.turns, emotions, classes)
                row[mode] = {"windows": len(yt), "accuracy": float(np.mean(np.array(yt) == np.array(yp))) if yt else None}
                pooled[mode].setdefault(corpus, ([], []))
                pooled[mode][corpus][0].extend(yt)
                pooled[mode][corpus][1].extend(yp)
                if mode != "none":
                    ad = a.provenance["adaptation"]
                    groups = ad.get("per_group", {})
                    row["found_speakers"] = len(a.speakers)
                    row[mode]["groups_adapted"] = sum(r.get("used") == "adapted" for r in groups.values())
                    row[mode]["adapted_share"] = ad.get("adapted_share", 0.0)
            rows.append(row)
            print(f"moods={moods} {seed} {corpus}: {sim.info['speakers']} speakers, found {row['found_speakers']}; "
                  + ", ".join(f"{m} {row[m]['accuracy']:.3f}" + (f" ({row[m]['adapted_share']:.0%} adapted)"
                                                                  if m != "none" else "") for m in MODES)
                  + f" ({row['none']['windows']} windows, {time.time() - t0:.0f} s)", flush=True)
        summary = {}
        for mode in MODES:
            per_corpus = {c: {"windows": len(t), "uar": float(balanced_accuracy_score(t, p)),
                              "accuracy": float(np.mean(np.array(t) == np.array(p)))}
                          for c, (t, p) in pooled[mode].items()}
            summary[mode] = {"per_corpus": per_corpus,
                             "mean_uar": float(np.mean([v["uar"] for v in per_corpus.values()])),
                             "mean_conversation_accuracy": float(np.mean([r[mode]["accuracy"] for r in rows
                                                                          if r[mode]["accuracy"] is not None]))}
        for mode in MODES[1:]:
            diffs = [r[mode]["accuracy"] - r["none"]["accuracy"] for r in rows if r["none"]["accuracy"] is not None]
            summary[f"{mode}_minus_none"] = {"mean": float(np.mean(diffs)), "worst": float(np.min(diffs)),
                                             "best": float(np.max(diffs)),
                                             "conversations_worse_by_0.03": int(sum(d < -0.03 for d in diffs)),
                                             "conversations": len(diffs)}
            summary[mode]["adapted_share_mean"] = float(np.mean([r[mode]["adapted_share"] for r in rows]))
        results["settings"][f"moods={moods}"] = {"summary": summary, "conversations": rows}
        print(json.dumps({f"moods={moods}": summary}, indent=1), flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
