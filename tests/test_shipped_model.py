"""The bundled default model: complete folder, honest card, and it runs offline."""

from __future__ import annotations

import json

import pytest

from conftest import RAVDESS, ROOT, needs_ravdess

DEFAULT = ROOT / "models" / "default"


def test_default_model_folder_and_card():
    card = json.loads((DEFAULT / "card.json").read_text())
    assert (DEFAULT / "model.safetensors").is_file() and (DEFAULT / "LICENSE-whisper.txt").is_file()
    assert card["architecture"] == "whisper"
    assert card["labels"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert card["sample_rate"] == 16_000
    for needle in ("CC BY-NC-SA 4.0", "non-commercial", "ASED", "EmoDB", "MIT"):
        assert needle in card["licence"], needle
    assert card["training"]["command"].startswith(
        "ser train --data ../shared/data/ravdess16k --corpus ravdess --data ../shared/data/ased16k --corpus ased "
        "--data ../shared/data/emodb16k --corpus emodb")
    m = card["metrics"]
    assert "speaker-grouped 5-fold cross-validation over the pooled corpora (95 speakers" in m["protocol"]
    rav = m["per_corpus"]["ravdess"]
    assert len(rav["classes"]) == 8 and rav["uar"] >= 0.72, "8 RAVDESS emotions on unseen actors: UAR >= 0.72"
    assert m["calibration"]["ece_after"] <= 0.05, "calibrated probabilities: ECE at most 0.05 on held-out folds"
    loco = m["leave_one_corpus_out"]
    assert loco["mean_uar"] >= 0.50, "leave-one-corpus-out mean UAR >= 0.50"
    for corpus, r in loco["per_corpus"].items():
        assert r["uar"] > 1.5 * r["chance"], f"{corpus} held out: UAR {r['uar']:.3f} not above 1.5 x chance"
        assert corpus not in r["trained_on"]
    assert (DEFAULT / "model.safetensors").stat().st_size <= 32 * 1024 * 1024
    assert not [s for s in card["data"]["speakers"] if s in {f"ravdess:{a}" for a in range(21, 25)}]  # never 21-24


def test_loading_and_predicting_needs_no_network(monkeypatch, speech_like):
    """The shipped model is whole in the repo: with every socket refused, it loads and predicts."""
    import socket

    from ser.emotion.model import load_model

    def refuse(*a, **k):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    m = load_model("default", device="cpu")
    assert m.predict(speech_like, 16_000)["emotion"] in m.labels


def test_default_model_predicts_offline(speech_like):
    from ser.emotion.model import load_model

    m = load_model("default", device="cpu")
    out = m.predict(speech_like, 16_000)
    assert out["emotion"] in m.labels and abs(sum(out["probabilities"].values()) - 1) < 1e-4


@needs_ravdess
def test_ravdess_reader_on_the_real_copy():
    from ser.training.datasets import read_ravdess

    items = read_ravdess(RAVDESS)
    assert len(items) == 1200 and len({u.speaker for u in items}) == 20
    assert sum(u.label == "neutral" for u in items) == 80  # neutral has no strong intensity


@needs_ravdess
@pytest.mark.slow
def test_default_model_separates_high_arousal_on_ravdess_clips():
    """A sanity check on real speech (training actors, so not a performance figure)."""
    from ser.audio.decode import load_audio
    from ser.training.datasets import read_ravdess
    from ser.emotion.model import load_model

    m = load_model("default", device="cpu")
    items = [u for u in read_ravdess(RAVDESS, actors=[3, 4]) if u.label in ("angry", "sad")]
    hits = 0
    for u in items:
        a = load_audio(u.path)
        p = m.predict(a.y, a.sr)["probabilities"]
        hits += (p["angry"] > p["sad"]) == (u.label == "angry")
    assert hits / len(items) >= 0.75
