"""Scoring a saved model on a labelled corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ser.training.datasets import read_corpus
from ser.errors import DataError
from ser.emotion.labels import get_label_set


def evaluate_model(model: str | Path, data: str | Path, corpus: str, *, speakers: Sequence[str] | None = None,
                   device: str = "auto", progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Predict every utterance of ``corpus`` (optionally only ``speakers``) and score it.

    Corpus labels are mapped into the model's label set; utterances whose emotion the
    set leaves out are skipped. ``speakers`` match the id after the corpus prefix
    (``21`` or ``ravdess:21``)."""
    from ser.audio.decode import AudioLimits, load_audio
    from ser.emotion.model import load_model
    from ser.training.train import classification_metrics

    m = load_model(model, device=device)
    ls = get_label_set(m.card.label_set)
    utts = read_corpus(corpus, data)
    if speakers:
        wanted = {s.split(":")[-1].lstrip("0") for s in speakers}
        utts = [u for u in utts if u.speaker.split(":")[-1].lstrip("0") in wanted]
        if not utts:
            raise DataError(f"No utterances of speakers {', '.join(speakers)} in {data}.")
    y_true, y_pred, genders = [], [], []
    limits = AudioLimits(min_duration_s=0.2)
    for i, u in enumerate(utts):
        target = ls.mapping.get(u.label)
        if target is not None:
            audio = load_audio(u.path, limits=limits)
            p = m.predict_proba(audio.y, audio.sr, name=str(u.path))
            y_true.append(m.labels.index(target))
            y_pred.append(int(np.argmax(p)))
            genders.append(u.gender)
        if progress:
            progress("predict", i + 1, len(utts))
    report = classification_metrics(y_true, y_pred, m.labels)
    by_gender = {}
    for g in sorted({g for g in genders if g}):
        idx = [i for i, gg in enumerate(genders) if gg == g]
        by_gender[g] = classification_metrics([y_true[i] for i in idx], [y_pred[i] for i in idx], m.labels)["uar"]
    report.update(model=m.id, corpus=corpus, data=str(data), labels=m.labels, uar_by_gender=by_gender,
                  speakers=sorted({u.speaker for u in utts}))
    return report


def format_report(r: dict) -> str:
    labels = r["labels"]
    w = max(len(x) for x in labels) + 2
    lines = [f"model {r['model']} on {r['corpus']} ({r['n']} clips, {len(r['speakers'])} speakers)",
             f"UAR {r['uar']:.3f}   accuracy {r['accuracy']:.3f}   macro-F1 {r['macro_f1']:.3f}"]
    if r.get("uar_by_gender"):
        lines.append("UAR by gender: " + ", ".join(f"{g} {v:.3f}" for g, v in r["uar_by_gender"].items()))
    lines.append("per-class F1: " + ", ".join(f"{k} {v:.2f}" for k, v in r["per_class_f1"].items()))
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * w + "".join(f"{x[:6]:>7}" for x in labels))
    for label, row in zip(labels, r["confusion"]):
        lines.append(f"{label:<{w}}" + "".join(f"{v:>7d}" for v in row))
    return "\n".join(lines)
