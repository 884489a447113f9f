"""Emotion models: architectures, the model folder format, and loading.

Every architecture maps a batch of 16 kHz waveforms ``(B, n)`` to logits ``(B, C)``
and computes its own features inside (so a model folder is self-contained), except
``logreg``, which takes the clip-level statistics of :func:`ser.emotion.features.pooled_statistics`.

Architectures (``ARCHITECTURES``):

- ``gru``     — the student project's GRU over MFCC frames (hidden 32, 3 layers)
- ``cnn1d``   — 1D CNN over MFCC frames
- ``cnn2d``   — 2D CNN over the log-mel spectrogram
- ``m5``      — M5 (Dai et al. 2017) on the raw waveform
- ``logreg``  — logistic regression on pooled MFCC/spectral statistics
- ``whisper`` — the default: a frozen Whisper-base encoder (first blocks), mean + std
  pooling of chosen layers, and a linear head (``ser.emotion.whisper``; weights from OpenAI, MIT)
- ``sercnn``  — the earlier default: a residual 2D CNN over per-utterance-normalised
  log-mel with attentive statistics pooling, trained with SpecAugment and mixup

A model folder holds ``model.safetensors`` and ``card.json`` (see :class:`ModelCard`);
:func:`load_model` rebuilds the model from those two files alone.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ser.audio.decode import check_samples
from ser.emotion.calibration import softmax
from ser.errors import AudioError, ModelError
from ser.emotion.features import pooled_statistics, trim_silence
from ser.emotion.folder import CARD_FILE, ModelCard, WEIGHTS_FILE, model_fingerprint, resolve_model_dir
from ser.emotion.nets import build_model

_FRAMES_LOCK = threading.Lock()


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ModelError(f"Unknown device {device!r}; use 'auto', 'cpu' or 'cuda'.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu' or 'auto'.")
    return torch.device(device)


class EmotionModel:
    """A loaded model: ``predict(y, sr)`` gives the students' ``{"emotion", "probabilities"}``."""

    def __init__(self, net: nn.Module, card: ModelCard, device: torch.device, path: Path | None = None):
        self.net, self.card, self.device, self.path = net.eval().to(device), card, device, path
        self.labels = list(card.labels)
        self.fc = card.feature_config

    @property
    def input_kind(self) -> str:
        return getattr(self.net, "input_kind", "waveform")

    @property
    def id(self) -> str:
        return f"{self.card.name}@{self.card.ser_version}"

    @property
    def fingerprint(self) -> str | None:
        """:func:`model_fingerprint` of the folder it was loaded from (None for an in-memory model)."""
        return None if self.path is None else model_fingerprint(self.path)

    def prepare(self, y: np.ndarray, sr: int, *, name: str = "the audio") -> np.ndarray:
        """Validate rate and length, trim leading/trailing silence as in training."""
        if sr != self.card.sample_rate:
            raise AudioError(f"The model expects {self.card.sample_rate} Hz audio, got {sr} Hz; load it with ser.audio.load_audio.")
        check_samples(np.asarray(y), name)
        if self.fc.trim_db is not None:
            y = trim_silence(y, top_db=self.fc.trim_db)
        if len(y) < self.card.min_duration_s * sr:
            raise AudioError(
                f"{name} has {len(y) / sr:.2f} s of sound after trimming silence; the model needs at least "
                f"{self.card.min_duration_s:.2f} s. Record a longer clip."
            )
        return y

    def logits(self, y: np.ndarray, sr: int) -> np.ndarray:
        """Raw logits (C,) of one prepared clip."""
        if self.input_kind == "pooled":
            x = torch.from_numpy(pooled_statistics(y, sr))[None]
        else:
            x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None]
        with torch.inference_mode():
            return _finite(self.net(x.to(self.device))[0].float().cpu().numpy(), self.id)

    #: clips longer than this are scored in windows (bounded memory) and the probabilities averaged
    max_clip_s: float = 20.0
    window_s: float = 10.0

    def predict_proba(self, y: np.ndarray, sr: int, *, name: str = "the audio") -> np.ndarray:
        """Class probabilities (C,) of one clip. A clip longer than ``max_clip_s`` is scored in
        ``window_s`` windows with 50 % overlap, and their probabilities are averaged."""
        y = self.prepare(y, sr, name=name)
        if len(y) <= self.max_clip_s * sr:
            return softmax(self.logits(y, sr) / self.card.temperature)
        win, hop = int(self.window_s * sr), int(self.window_s * sr / 2)
        starts = range(0, len(y) - win + hop, hop)
        probs = [softmax(self.logits(y[s:s + win], sr) / self.card.temperature) for s in starts
                 if len(y[s:s + win]) >= self.card.min_duration_s * sr]
        return np.mean(probs, axis=0)

    def predict_proba_batch(self, clips: Sequence[np.ndarray], sr: int, *, batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, C) of many clips, batched by length. A clip with too little sound
        after trimming gets a row of NaN instead of an error (the caller decides what to show)."""
        out = np.full((len(clips), len(self.labels)), np.nan, dtype=np.float32)
        by_len: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, y in enumerate(clips):
            try:
                y = self.prepare(y, sr)
            except AudioError:
                continue
            if len(y) > self.max_clip_s * sr:
                out[i] = self.predict_proba(y, sr)
                continue
            by_len.setdefault(len(y), []).append((i, y))
        for items in by_len.values():
            for b in range(0, len(items), batch_size):
                chunk = items[b:b + batch_size]
                if self.input_kind == "pooled":
                    x = torch.from_numpy(np.stack([pooled_statistics(y, sr) for _, y in chunk]))
                else:
                    x = torch.from_numpy(np.stack([np.asarray(y, dtype=np.float32) for _, y in chunk]))
                with torch.inference_mode():
                    z = _finite(self.net(x.to(self.device)).float().cpu().numpy(), self.id)
                out[[i for i, _ in chunk]] = softmax(z / self.card.temperature)
        return out

    def _whisper_frames(self):
        frames = self.__dict__.get("_frames")
        if frames is None:  # built once per loaded model (the log-mel front end holds the filterbank)
            with _FRAMES_LOCK:  # the emotion stage's workers may ask at once
                frames = self.__dict__.get("_frames")
                if frames is None:
                    from ser.emotion.whisper import WhisperFrames

                    frames = self._frames = WhisperFrames(self.net.encoder, self.net.layers).to(self.device)
        return frames

    def pooled_spans(self, y: np.ndarray, sr: int, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """Pooled encoder features (len(spans), F) of several ``(start, end)`` sample spans of one
        stretch of audio ``y``: ``y`` is encoded once (in 30-s pieces) and each span pools its
        20-ms frames. A span shorter than the model's minimum gets a row of NaN. Whisper models only."""
        from ser.emotion.whisper import SECONDS_PER_POSITION, mean_std

        if not hasattr(self.net, "encoder"):
            raise ModelError(f"The model {self.id} ({self.card.architecture}) has no encoder features; "
                             f"adaptation and span pooling need a Whisper model.")
        if sr != self.card.sample_rate:
            raise AudioError(f"The model expects {self.card.sample_rate} Hz audio, got {sr} Hz.")
        check_samples(np.asarray(y), "the audio")
        width = 2 * self.net.encoder.conv1.out_channels * len(self.net.layers)
        out = np.full((len(spans), width), np.nan, dtype=np.float32)
        per_frame = int(round(SECONDS_PER_POSITION * sr))
        with torch.inference_mode():
            f = self._whisper_frames()(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(self.device))
            for i, (a, b) in enumerate(spans):
                if b - a < self.card.min_duration_s * sr:
                    continue
                lo, hi = a // per_frame, max(a // per_frame + 1, -(-b // per_frame))
                out[i] = mean_std(f[:, lo:min(hi, f.shape[1])]).reshape(-1).float().cpu().numpy()
        return out

    def pooled(self, y: np.ndarray, sr: int, *, name: str = "the audio") -> np.ndarray:
        """Pooled encoder features (F,) of one clip (silence trimmed as in training)."""
        y = self.prepare(y, sr, name=name)
        return self.pooled_spans(y, sr, [(0, len(y))])[0]

    def classify_pooled(self, X: np.ndarray) -> np.ndarray:
        """Raw logits (N, C) of pooled features (N, F); rows of NaN stay NaN."""
        X = np.asarray(X, dtype=np.float32)
        z = np.full((len(X), len(self.labels)), np.nan)
        ok = ~np.isnan(X).any(1)
        if ok.any():
            with torch.inference_mode():
                z[ok] = _finite(self.net.classify(torch.from_numpy(X[ok]).to(self.device)).float().cpu().numpy(), self.id)
        return z

    def predict_proba_spans(self, y: np.ndarray, sr: int, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """Probabilities (len(spans), C) of several ``(start, end)`` sample spans of one stretch of
        audio ``y`` (a speaker turn). A Whisper model encodes ``y`` once and pools each span's
        frames (:meth:`pooled_spans`), instead of re-encoding overlapping windows; other models
        score each span as a clip. A span too short to score gets a row of NaN."""
        if not hasattr(self.net, "encoder") or not len(spans):
            return self.predict_proba_batch([y[a:b] for a, b in spans], sr)
        z = self.classify_pooled(self.pooled_spans(y, sr, spans))
        return softmax(z / self.card.temperature).astype(np.float32)

    def result(self, p: np.ndarray, *, margin: float | None = None) -> dict:
        """``{"emotion", "probabilities", "uncertain"}`` of a probability vector (``margin``: the
        uncertain margin of the head that produced it; default the card's)."""
        order = np.argsort(p)[::-1]
        gap = float(p[order[0]] - p[order[1]]) if len(p) > 1 else 1.0
        return {
            "emotion": self.labels[order[0]],
            "probabilities": {label: round(float(v), 6) for label, v in zip(self.labels, p)},
            "uncertain": gap < (self.card.uncertain_margin if margin is None else margin),
        }

    def predict(self, y: np.ndarray, sr: int, *, name: str = "the audio") -> dict:
        return self.result(self.predict_proba(y, sr, name=name))

    def warm_up(self, seconds: float = 2.0) -> "EmotionModel":
        """Run one inference on a generated voice-like clip, so that the first real clip does not
        pay for torch's first call (about 0.3 s on a 2-core CPU). Returns the model."""
        sr = self.card.sample_rate
        t = np.arange(int(seconds * sr)) / sr
        y = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        self.predict_proba((0.1 * y).astype(np.float32), sr)
        return self


def _finite(z: np.ndarray, model_id: str) -> np.ndarray:
    """The model's output, or a ModelError: a NaN or infinite logit never becomes a probability."""
    if not np.isfinite(z).all():
        raise ModelError(f"The model {model_id} produced non-finite scores for valid audio; "
                         "its weights may be damaged. Reinstall or retrain it.")
    return z


def load_model(name_or_path: str | Path = "default", device: str = "auto") -> EmotionModel:
    """Rebuild a model from its folder (``card.json`` + ``model.safetensors``).

    ``device``: "auto" (CUDA when present), "cpu" or "cuda". Only safetensors
    weights are read; no pickle is ever loaded.
    """
    from safetensors.torch import load_file

    folder = resolve_model_dir(name_or_path)
    try:
        card = ModelCard.from_dict(json.loads((folder / CARD_FILE).read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{folder / CARD_FILE} is not valid JSON ({exc}).") from exc
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}; the model folder is incomplete.")
    net = build_model(card.architecture, card.feature_config, len(card.labels), **card.arch_args)
    try:
        net.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except RuntimeError as exc:
        raise ModelError(f"The weights in {folder} do not match the card's architecture ({str(exc)[:200]}).") from exc
    return EmotionModel(net, card, pick_device(device), folder)
