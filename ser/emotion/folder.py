"""A model folder: ``card.json`` (the :class:`ModelCard`) and ``model.safetensors``; where
shipped models live, saving one, and its fingerprint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from ser import __version__
from ser.errors import ModelError
from ser.emotion.features import FeatureConfig
from ser.emotion.nets import count_parameters


CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


# --- the model folder ----------------------------------------------------------------
@dataclass
class ModelCard:
    """What a model folder says about itself (``card.json``)."""

    name: str
    architecture: str
    labels: list[str]
    label_set: str = "ravdess8"
    arch_args: dict = field(default_factory=dict)
    sample_rate: int = 16_000
    features: dict = field(default_factory=lambda: FeatureConfig().to_dict())
    min_duration_s: float = 0.5
    temperature: float = 1.0  # logits are divided by this before the softmax (calibration)
    uncertain_margin: float = 0.0  # top-1 minus top-2 probability below which a result is "uncertain"
    parameters: int = 0
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    licence: str = ""
    metrics: dict = field(default_factory=dict)
    #: ser.emotion.adapt settings and calibration per adaptation head ("batch", "speaker"); empty: none
    adaptation: dict = field(default_factory=dict)
    ser_version: str = __version__
    format_version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        known = {f for f in cls.__dataclass_fields__}
        missing = {"name", "architecture", "labels"} - set(d)
        if missing:
            raise ModelError(f"The model card lacks {', '.join(sorted(missing))}.")
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(**self.features)


def save_model(model: nn.Module, card: ModelCard, folder: str | Path) -> Path:
    """Write ``model.safetensors`` and ``card.json`` into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card.parameters = count_parameters(model)
    half = tuple(getattr(model, "store_half", ()))
    state = {k: (v.detach().cpu().half() if half and k.startswith(half) and v.is_floating_point() else v.detach().cpu()).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"architecture": card.architecture})
    (folder / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return folder


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A folder path as given, or a shipped model's name under ``models/``."""
    import os

    candidates = [Path(name_or_path)]
    if env := os.environ.get("SER_MODELS_DIR"):
        candidates.append(Path(env) / str(name_or_path))
    candidates.append(MODELS_DIR / str(name_or_path))
    candidates = list(dict.fromkeys(candidates))
    for c in candidates:
        if (c / CARD_FILE).is_file():
            return c
    raise ModelError(
        f"No model folder found for {str(name_or_path)!r} (looked in {', '.join(str(c) for c in candidates)}); "
        f"a model folder holds {CARD_FILE} and {WEIGHTS_FILE}. Available: {', '.join(available_models()) or 'none'}."
    )


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(folder: str | Path) -> str:
    """A short content hash of a model folder's card and weights: what a resumed batch compares,
    so a model retrained into the same folder (same name and version) is not taken for the old one.
    Remembered per file identity and modification time, so a batch checking thousands of files
    hashes the weights once."""
    import hashlib

    files = [Path(folder) / name for name in (CARD_FILE, WEIGHTS_FILE)]
    stamp = tuple((str(f.resolve()), st.st_ino, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    if stamp not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        _FINGERPRINTS[stamp] = h.hexdigest()[:16]
    return _FINGERPRINTS[stamp]


def available_models() -> list[str]:
    """Emotion model folders under ``models/`` (``models/diarization`` holds the diarizer's networks)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in MODELS_DIR.glob(f"*/{CARD_FILE}") if (p.parent / WEIGHTS_FILE).is_file())
