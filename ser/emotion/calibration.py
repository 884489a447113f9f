"""Probability calibration: temperature scaling, expected calibration error, the
reliability diagram, and the "uncertain" margin.

Everything is fitted on the *validation* predictions of speaker-grouped cross-
validation (``cv_predictions.jsonl`` rows with ``"split": "val"``) and measured on
the *test* predictions of the same folds, so the reported ECE comes from speakers
the temperature never saw.

Example::

    ser calibrate models/default      # writes temperature, margin and ECE into card.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ser.errors import ModelError


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits / temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))))


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    res = minimize_scalar(lambda logt: nll(logits, labels, float(np.exp(logt))), bounds=(-3, 3), method="bounded")
    return float(np.exp(res.x))


def reliability(probs: np.ndarray, labels: Sequence[int], n_bins: int = 10) -> dict:
    """Top-label reliability: per confidence bin, mean confidence, accuracy, count; and ECE."""
    labels = np.asarray(labels)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "confidence": float(conf[m].mean()),
                         "accuracy": float(correct[m].mean()), "count": int(m.sum())})
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return {"ece": float(ece), "bins": rows, "n": int(len(labels))}


def choose_margin(probs: np.ndarray, labels: Sequence[int], *, target_accuracy: float = 0.75) -> float:
    """The smallest top-1 minus top-2 margin above which held-out predictions are right
    at least ``target_accuracy`` of the time (1.0 if no margin achieves it)."""
    labels = np.asarray(labels)
    s = np.sort(probs, axis=1)
    margin = s[:, -1] - s[:, -2]
    correct = probs.argmax(axis=1) == labels
    for m in np.round(np.arange(0.0, 1.0, 0.01), 2):
        keep = margin >= m
        if keep.sum() >= max(10, 0.05 * len(labels)) and correct[keep].mean() >= target_accuracy:
            return float(m)
    return 1.0


def calibrate_model_dir(folder: str | Path, *, target_accuracy: float = 0.75) -> dict:
    """Fit temperature and margin from ``folder/cv_predictions.jsonl``; update ``card.json``;
    write ``reliability.png``. Returns the calibration record stored in the card."""
    folder = Path(folder)
    preds = folder / "cv_predictions.jsonl"
    card_path = folder / "card.json"
    if not preds.is_file() or not card_path.is_file():
        raise ModelError(f"{folder} needs card.json and cv_predictions.jsonl (written by `ser train` with cross-validation).")
    rows = [json.loads(line) for line in preds.read_text().splitlines() if line.strip()]
    val = [r for r in rows if r.get("split") == "val"]
    test = [r for r in rows if r.get("split") != "val"]
    if not val or not test:
        raise ModelError(f"{preds} has no validation or test rows; re-run `ser train` with cross-validation.")
    zv, yv = np.array([r["logits"] for r in val]), np.array([r["label"] for r in val])
    zt, yt = np.array([r["logits"] for r in test]), np.array([r["label"] for r in test])
    record = calibration_record(zv, yv, [r.get("corpus", "") for r in val], zt, yt, target_accuracy=target_accuracy)
    t, margin = record["temperature"], record["uncertain_margin"]
    before = reliability(softmax(zt), yt)
    card = json.loads(card_path.read_text())
    card["temperature"] = t
    card["uncertain_margin"] = margin
    card.setdefault("metrics", {})["calibration"] = record
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    from ser.emotion.plots import save_reliability_png

    after = reliability(softmax(zt / t), yt)
    save_reliability_png(before, after, folder / "reliability.png",
                         title=f"{card.get('name', folder.name)}: CV test folds, T = {t:.2f}")
    return record


def calibration_record(zv: np.ndarray, yv: np.ndarray, corpora_v: Sequence[str], zt: np.ndarray, yt: np.ndarray,
                       *, target_accuracy: float = 0.75) -> dict:
    """Temperature and uncertain margin fitted on validation logits ``zv`` (with their corpora),
    ECE before/after measured on test logits ``zt``."""
    t = fit_temperature(zv, yv)
    before, after = reliability(softmax(zt), yt), reliability(softmax(zt / t), yt)
    pv = softmax(zv / t)
    corpora_v = np.asarray(corpora_v)
    # several corpora: the margin must hold in each (the hardest decides), not only on the easy majority
    by_corpus = {c: choose_margin(pv[m], yv[m], target_accuracy=target_accuracy)
                 for c in sorted(set(corpora_v.tolist())) if (m := corpora_v == c).sum() >= 20}
    margin = max(by_corpus.values()) if by_corpus else choose_margin(pv, yv, target_accuracy=target_accuracy)
    pt = softmax(zt / t)
    s = np.sort(pt, axis=1)
    certain = (s[:, -1] - s[:, -2]) >= margin
    return {
        "method": "temperature scaling fitted on the validation folds of speaker-grouped CV; "
                  "ECE (10 equal-width bins, top label) measured on the test folds",
        "temperature": t, "ece_before": before["ece"], "ece_after": after["ece"],
        "nll_before": nll(zt, yt, 1.0), "nll_after": nll(zt, yt, t),
        "reliability_after": after["bins"],
        "uncertain_rule": f"uncertain when top-1 minus top-2 probability < margin; margin = smallest value at which "
                          f"validation-fold predictions above it are right >= {target_accuracy:.0%} of the time"
                          + (" in every training corpus (the largest of the per-corpus margins)" if len(by_corpus) > 1 else ""),
        "uncertain_margin_by_corpus": by_corpus,
        "uncertain_margin": margin,
        "test_share_uncertain": float(1 - certain.mean()),
        "test_accuracy_when_certain": float((pt.argmax(1) == yt)[certain].mean()) if certain.any() else None,
    }


def calibrate_and_log(folder: str | Path, log) -> dict:
    """``calibrate_model_dir`` after training, with its one-line report to ``log``."""
    cal = calibrate_model_dir(folder)
    log(f"calibrated: temperature {cal['temperature']:.2f}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}, "
        f"uncertain margin {cal['uncertain_margin']:.2f}")
    return cal
