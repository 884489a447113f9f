from __future__ import annotations

import json

import numpy as np
import pytest

from ser.emotion.calibration import calibrate_model_dir, choose_margin, fit_temperature, reliability, softmax
from ser.errors import ModelError


def _sample(n=4000, c=5, true_t=2.5, seed=0):
    """Labels drawn from softmax(z / true_t): the calibrated temperature is true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, c))
    p = softmax(z / true_t)
    y = np.array([rng.choice(c, p=row) for row in p])
    return z, y


def test_temperature_is_recovered():
    z, y = _sample()
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.1)


def test_ece_is_small_when_calibrated_and_large_when_not():
    z, y = _sample()
    assert reliability(softmax(z / 2.5), y)["ece"] < 0.03
    assert reliability(softmax(z), y)["ece"] > 0.1


def test_margin_rule():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.52, 0.48], [0.8, 0.2]] * 10)
    labels = np.array([0, 1, 1, 0] * 10)  # confident ones right, close calls wrong
    m = choose_margin(probs, labels, target_accuracy=0.9)
    assert 0.1 < m <= 0.6


def test_calibrate_model_dir(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    z, y = _sample(n=600, c=8, true_t=3.0)
    rows = [{"label": int(lbl), "logits": zz.tolist(), **({"split": "val"} if i % 2 else {})} for i, (zz, lbl) in enumerate(zip(z, y))]
    (folder / "cv_predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    rec = calibrate_model_dir(folder)
    assert rec["temperature"] == pytest.approx(3.0, rel=0.25) and rec["ece_after"] < rec["ece_before"]
    card = json.loads((folder / "card.json").read_text())
    assert card["temperature"] == rec["temperature"] and card["metrics"]["calibration"]["ece_after"] == rec["ece_after"]
    assert (folder / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ModelError, match="needs card.json and cv_predictions.jsonl"):
        calibrate_model_dir(tmp_path)
