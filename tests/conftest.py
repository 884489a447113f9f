"""Shared fixtures. No test needs the network, a GPU or downloaded weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SER_WARM_DEMO", "0")  # AppTests swap models; tests/test_serve.py starts a warmed server
sys.path.insert(0, str(Path(__file__).parent))

from audiogen import tone  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared"))
RAVDESS = SHARED / "data" / "ravdess16k"

needs_ravdess = pytest.mark.skipif(
    not RAVDESS.is_dir(), reason=f"needs the RAVDESS copy at {RAVDESS} (../shared is absent in a user's clone)"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small untrained sercnn saved as a real model folder (safetensors + card)."""
    import torch

    from ser.emotion.features import FeatureConfig
    from ser.emotion.labels import LABEL_SETS
    from ser.emotion.folder import ModelCard, save_model
    from ser.emotion.nets import build_model

    torch.manual_seed(0)
    labels = list(LABEL_SETS["ravdess8"].labels)
    net = build_model("sercnn", FeatureConfig(), len(labels), channels=(8, 8, 16, 16))
    card = ModelCard(name="tiny", architecture="sercnn", labels=labels, arch_args={"channels": [8, 8, 16, 16]},
                     licence="test model, random weights")
    return save_model(net.eval(), card, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def make_app(tiny_model_dir, monkeypatch, tmp_path):
    """The dashboard under AppTest with the given model folders (default: the tiny model as
    "default"), History in a temporary file, CPU; returns it after its first run."""

    def make(models: dict[str, Path] | None = None, timeout: float = 180):
        import shutil

        from streamlit.testing.v1 import AppTest

        root = tmp_path / "models"
        for name, src in (models or {"default": tiny_model_dir}).items():
            shutil.copytree(src, root / name)
        monkeypatch.setattr("ser.emotion.folder.MODELS_DIR", root)
        monkeypatch.setenv("SER_HISTORY_DB", str(tmp_path / "history.sqlite"))
        monkeypatch.chdir(ROOT)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        at.session_state["device_choice"] = "cpu"
        return at.run()

    return make


@pytest.fixture
def speech_like() -> np.ndarray:
    return tone(2.0, 16_000, freq=180.0)
