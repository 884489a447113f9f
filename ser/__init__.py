"""ser — speech emotion recognition you can look at.

The public surface is small and imports lazily (no torch, no streamlit at
``import ser``)::

    from ser import load_audio, load_model
    audio = load_audio("clip.wav")
    model = load_model("default")
    model.predict(audio.y, audio.sr)  # {"emotion": ..., "probabilities": {...}, ...}
"""

from __future__ import annotations

__version__ = "0.1.0"

from ser.threads import set_environment  # noqa: E402

set_environment()  # threads that yield, not spin: before torch or BLAS start in any entry point (ser.threads)

from ser.audio.decode import Audio, AudioLimits, load_audio  # noqa: E402  (numpy only)
from ser.errors import AudioError, ConfigError, DataError, ModelError, SERError  # noqa: E402

__all__ = [
    "Audio", "AudioError", "AudioLimits", "ConfigError", "DataError", "ModelError", "SERError",
    "__version__", "load_audio", "load_model",
]


def __getattr__(name: str):
    if name == "load_model":  # imports torch: only when a model is used
        from ser.emotion.model import load_model

        return load_model
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
