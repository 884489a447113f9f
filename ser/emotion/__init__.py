"""The emotion model: from 16 kHz audio to calibrated probabilities over emotions.

- :mod:`ser.emotion.model` — :class:`EmotionModel` (windows, batching, calibration,
  adaptation) and :func:`load_model`; :mod:`ser.emotion.folder` — the model folder
  (``card.json`` + ``model.safetensors``), where shipped models live, saving, fingerprints;
- :mod:`ser.emotion.nets` — the torch networks; :mod:`ser.emotion.whisper` — the Whisper-base
  encoder blocks and their log-mel front end; :mod:`ser.emotion.head` — the linear head;
- :mod:`ser.emotion.features` — numpy features (log-mel, MFCC, pooled statistics, silence trim);
- :mod:`ser.emotion.labels` — label sets as data; :mod:`ser.emotion.calibration` — temperature
  and the "uncertain" margin; :mod:`ser.emotion.adapt` — unsupervised adaptation to a
  recording or batch; :mod:`ser.emotion.plots` — confusion and reliability PNGs.

Importing this package does not import torch; :func:`load_model` does.
"""

__all__ = ["load_model"]


def __getattr__(name: str):
    if name == "load_model":  # imports torch: only when a model is used
        from ser.emotion.model import load_model

        return load_model
    raise AttributeError(f"module 'ser.emotion' has no attribute {name!r}")
