"""Speaker-grouped training and evaluation, end to end on a small generated corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiogen import tone, write
from ser.errors import ConfigError, DataError
from ser.training.train import TrainConfig, classification_metrics, load_config, run_training, speaker_folds

LABELS = ["neutral", "happy", "sad", "angry"]


@pytest.fixture(scope="module")
def toy_corpus(tmp_path_factory) -> Path:
    """6 speakers x 4 'emotions' x 3 takes; each emotion is a pitch band, each speaker a shift."""
    root = tmp_path_factory.mktemp("toy")
    rows = ["path,label,speaker,gender"]
    for s in range(6):
        for e, label in enumerate(LABELS):
            for take in range(3):
                f = 150.0 * (1.6 ** e) * (1 + 0.03 * s)
                name = f"s{s}_{label}_{take}.wav"
                write(root / name, tone(1.0, 16_000, freq=f, seed=100 * s + take), 16_000, "wav")
                rows.append(f"{name},{label},spk{s},{'female' if s % 2 else 'male'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_speaker_folds_are_disjoint_and_balanced():
    folds = speaker_folds([f"s{i:02d}" for i in range(20)] * 3, 5)
    assert len(folds) == 20
    assert sorted(np.bincount(list(folds.values()))) == [4] * 5
    with pytest.raises(DataError, match="3 speakers cannot make 5 speaker-disjoint folds"):
        speaker_folds(["a", "b", "c"], 5)


def test_metrics():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    assert m["uar"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)
    assert m["confusion"] == [[1, 1], [0, 2]]


def test_config_precedence(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"epochs": 7, "lr": 0.01, "features": {"n_mels": 40}}))
    cfg = load_config(p, epochs=3)
    assert (cfg.epochs, cfg.lr, cfg.features.n_mels) == (3, 0.01, 40)
    assert TrainConfig().epochs == load_config(None).epochs
    p.write_text(json.dumps({"epochz": 1}))
    with pytest.raises(ConfigError, match="Unknown training option"):
        load_config(p)


@pytest.mark.parametrize("arch", ["cnn2d", "logreg"])
def test_train_cross_validates_and_saves_a_loadable_model(toy_corpus, tmp_path, arch):
    from ser.audio.decode import load_audio
    from ser.emotion.model import load_model

    cfg = TrainConfig(arch=arch, label_set="four", epochs=3, patience=3, folds=3, batch_size=8, lr=1e-2,
                      pitch_p=0.5, seed=1)
    out = tmp_path / "m"
    result = run_training(toy_corpus.parent / "labels.csv", "csv", out, cfg, command="ser train ...", log=lambda m: None)
    # every test clip belongs to a speaker that was in neither training nor validation
    for fold in result["folds"]:
        assert len(fold["test_speakers"]) == 2
    test_by_fold = {}
    for row in result["clips"]:
        if row.get("split") != "val":
            test_by_fold.setdefault(row["fold"], set()).add(row["speaker"])
    assert sorted(s for v in test_by_fold.values() for s in v) == sorted(f"csv:spk{i}" for i in range(6))
    assert sum(len(v) for v in test_by_fold.values()) == len(set().union(*test_by_fold.values()))  # disjoint folds
    summary = json.loads((out / "cv_metrics.json").read_text())["summary"]
    assert 0 <= summary["uar"]["mean"] <= 1 and len(summary["uar"]["folds"]) == 3
    card = json.loads((out / "card.json").read_text())
    assert card["labels"] == LABELS and card["metrics"]["uar"]["mean"] == pytest.approx(summary["uar"]["mean"])
    assert "speaker-grouped 3-fold" in card["metrics"]["protocol"] and card["training"]["command"] == "ser train ..."
    assert json.loads((out / "train_config.json").read_text())["config"]["epochs"] == 3
    m = load_model(out, device="cpu")
    audio = load_audio(toy_corpus.parent / "s0_sad_0.wav")
    assert m.predict(audio.y, audio.sr)["emotion"] in LABELS


def test_the_toy_task_is_learnt(toy_corpus, tmp_path):
    """A check that can fail: pitch bands are trivially separable, so CV UAR must be high."""
    cfg = TrainConfig(arch="logreg", label_set="four", epochs=60, patience=60, folds=3, batch_size=16, lr=3e-2)
    result = run_training(toy_corpus, "csv", tmp_path / "lr", cfg, final=False, log=lambda m: None)
    assert result["summary"]["uar"]["mean"] >= 0.9
