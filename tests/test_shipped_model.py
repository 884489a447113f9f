"""The bundled default model: complete folder, honest card, and it runs offline."""

from __future__ import annotations

import json

import pytest

from conftest import RAVDESS, ROOT, needs_ravdess

DEFAULT = ROOT / "models" / "default"


def test_default_model_folder_and_card():
    card = json.loads((DEFAULT / "card.json").read_text())
    assert (DEFAULT / "model.safetensors").is_file()
    assert card["labels"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert card["sample_rate"] == 16_000 and card["features"]["hop_length"] == 160
    assert "CC BY-NC-SA 4.0" in card["licence"] and "non-commercial" in card["licence"]
    assert card["training"]["command"].startswith("ser train --data ../shared/data/ravdess16k --corpus ravdess")
    m = card["metrics"]
    assert "speaker-grouped 5-fold cross-validation over 20 speakers" in m["protocol"]
    assert m["uar"]["mean"] >= 0.62, "the shipped model must reach UAR 0.62 in speaker-grouped CV"
    assert m["calibration"]["ece_after"] <= 0.05, "calibrated probabilities: ECE at most 0.05 on held-out folds"
    assert (DEFAULT / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    assert len(m["per_fold_uar"]) == 5
    assert card["data"]["speakers"] == [f"ravdess:{a:02d}" for a in range(1, 21)]  # never 21-24


def test_default_model_predicts_offline(speech_like):
    from ser.models import load_model

    m = load_model("default", device="cpu")
    out = m.predict(speech_like, 16_000)
    assert out["emotion"] in m.labels and abs(sum(out["probabilities"].values()) - 1) < 1e-4


@needs_ravdess
def test_ravdess_reader_on_the_real_copy():
    from ser.datasets import read_ravdess

    items = read_ravdess(RAVDESS)
    assert len(items) == 1200 and len({u.speaker for u in items}) == 20
    assert sum(u.label == "neutral" for u in items) == 80  # neutral has no strong intensity


@needs_ravdess
@pytest.mark.slow
def test_default_model_separates_high_arousal_on_ravdess_clips():
    """A sanity check on real speech (training actors, so not a performance figure)."""
    from ser.audio import load_audio
    from ser.datasets import read_ravdess
    from ser.models import load_model

    m = load_model("default", device="cpu")
    items = [u for u in read_ravdess(RAVDESS, actors=[3, 4]) if u.label in ("angry", "sad")]
    hits = 0
    for u in items:
        a = load_audio(u.path)
        p = m.predict(a.y, a.sr)["probabilities"]
        hits += (p["angry"] > p["sad"]) == (u.label == "angry")
    assert hits / len(items) >= 0.75
