"""`ser tune` (Optuna, resumable, writes a config `ser train` accepts) and the evaluation report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiogen import tone, write
from ser.errors import DataError
from ser.training.report import breakdown, report, to_markdown
from ser.training.train import TrainConfig, load_config


@pytest.fixture
def tiny_corpus(tmp_path):
    root = tmp_path / "rav"
    for actor in range(1, 7):
        d = root / f"Actor_{actor:02d}"
        d.mkdir(parents=True)
        for emo in ("01", "05"):
            for rep in ("01", "02"):
                freq = 140 + 20 * actor + (80 if emo == "05" else 0)
                write(d / f"03-01-{emo}-01-01-{rep}-{actor:02d}.wav", tone(1.2, freq=freq, seed=actor), 16000, "wav")
    return root


def test_tune_writes_a_config_train_accepts_and_resumes(tmp_path, tiny_corpus):
    from ser.training.tune import run_tuning
    base = TrainConfig(arch="sercnn", epochs=1, folds=3, threads=1, pitch_semitones=0.0)
    study, out = tmp_path / "study.sqlite", tmp_path / "best.json"
    r1 = run_tuning(tiny_corpus, "ravdess", base, trials=2, study_path=study, out_config=out, log=lambda m: None)
    assert r1["trials_done"] == 2 and 0.0 <= r1["best_value"] <= 1.0
    cfg = load_config(out)
    assert cfg.epochs == 1 and cfg.folds == 3
    assert cfg.lr == pytest.approx(r1["best_params"]["lr"])
    # resuming the same study runs only the missing trials
    r2 = run_tuning(tiny_corpus, "ravdess", base, trials=3, study_path=study, out_config=out, log=lambda m: None)
    assert r2["trials_done"] == 3
    import optuna
    s = optuna.load_study(study_name="ser", storage=f"sqlite:///{study}")
    assert len(s.trials) == 3
    assert all(len(t.intermediate_values) == 3 for t in s.trials if t.state.name == "COMPLETE")


def _fake_run(folder, rows, labels):
    folder.mkdir(parents=True)
    (folder / "cv_metrics.json").write_text(json.dumps({"labels": labels, "summary": {}, "folds": []}))
    (folder / "train_config.json").write_text(json.dumps({"config": {"arch": "sercnn"}}))
    with open(folder / "cv_predictions.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def test_report_by_label_set_and_gender(tmp_path):
    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    rows = []
    # fold 0: every clip right; fold 1: happy clips called surprised (both positive in valence),
    # sad clips called angry (both negative); women always right
    for fold in (0, 1):
        for gender in ("female", "male"):
            for label in range(8):
                pred = label
                if fold == 1 and gender == "male":
                    pred = {2: 7, 3: 4}.get(label, label)
                logits = np.full(8, -3.0)
                logits[pred] = 3.0
                rows.append({"fold": fold, "gender": gender, "label": label, "logits": logits.tolist(),
                             "speaker": f"{gender}{fold}", "path": "x"})
                rows.append({**rows[-1], "split": "val", "label": (label + 1) % 8})  # ignored: validation rows
    _fake_run(tmp_path / "run", rows, labels)
    b = breakdown(tmp_path / "run")
    s8 = b["sets"]["ravdess8"]
    assert s8["female"]["uar"]["mean"] == 1.0
    assert s8["male"]["uar"]["folds"] == [1.0, 0.75]
    assert s8["all"]["n"] == 32
    # valence-2 (positive/negative) forgives both swaps; neutral and calm are left out of it
    v2 = b["sets"]["valence2"]
    assert v2["all"]["uar"]["mean"] == 1.0
    assert v2["all"]["n"] < 32
    md = to_markdown(report([tmp_path / "run"]))
    assert "| run | sercnn | 0.938 ± 0.062" in md and "valence3" in md and "female, 8" in md


def test_report_on_a_folder_without_cv_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="ser train"):
        breakdown(tmp_path)


def test_tune_refuses_the_whisper_head(tmp_path, tiny_corpus):
    from ser.errors import ConfigError
    from ser.training.tune import run_tuning

    with pytest.raises(ConfigError, match="--protocol loco"):
        run_tuning(tiny_corpus, "ravdess", TrainConfig(), trials=1, study_path=tmp_path / "s.sqlite",
                   out_config=tmp_path / "c.json", log=lambda m: None)
