"""Emotion models: architectures, the model folder format, and loading.

Every architecture maps a batch of 16 kHz waveforms ``(B, n)`` to logits ``(B, C)``
and computes its own features inside (so a model folder is self-contained), except
``logreg``, which takes the clip-level statistics of :func:`ser.features.pooled_statistics`.

Architectures (``ARCHITECTURES``):

- ``gru``     — the student project's GRU over MFCC frames (hidden 32, 3 layers)
- ``cnn1d``   — 1D CNN over MFCC frames
- ``cnn2d``   — 2D CNN over the log-mel spectrogram
- ``m5``      — M5 (Dai et al. 2017) on the raw waveform
- ``logreg``  — logistic regression on pooled MFCC/spectral statistics
- ``whisper`` — the default: a frozen Whisper-base encoder (first blocks), mean + std
  pooling of chosen layers, and a linear head (``ser.whisper``; weights from OpenAI, MIT)
- ``sercnn``  — the earlier default: a residual 2D CNN over per-utterance-normalised
  log-mel with attentive statistics pooling, trained with SpecAugment and mixup

A model folder holds ``model.safetensors`` and ``card.json`` (see :class:`ModelCard`);
:func:`load_model` rebuilds the model from those two files alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from . import __version__
from .audio import check_samples
from .calibration import softmax
from .errors import AudioError, ModelError
from .features import FeatureConfig, dct_matrix, mel_filterbank, pooled_statistics, trim_silence

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


# --- feature front ends (the same math as ser.features, batched in torch) ----------
class LogMel(nn.Module):
    """(B, n) waveform -> (B, n_mels, T) log-mel in dB, matching :func:`ser.features.log_mel`.

    With ``top_db``, each item is floored at its own maximum minus ``top_db`` so that
    digital silence (zero padding) does not dominate the statistics downstream."""

    def __init__(self, fc: FeatureConfig, top_db: float | None = 80.0):
        super().__init__()
        self.top_db = top_db
        self.n_fft, self.hop_length = fc.n_fft, fc.hop_length
        window = torch.zeros(fc.n_fft)
        off = (fc.n_fft - fc.win_length) // 2
        window[off:off + fc.win_length] = torch.hann_window(fc.win_length, periodic=True)
        self.register_buffer("window", window, persistent=False)
        fb = mel_filterbank(sr=fc.sr, n_fft=fc.n_fft, n_mels=fc.n_mels, fmin=fc.fmin, fmax=fc.fmax)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(y, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # (B, F, T)
        power = spec.real.square() + spec.imag.square()
        x = 10.0 * torch.log10(torch.clamp(self.fb @ power, min=1e-10))  # (B, M, T)
        if self.top_db is not None:
            x = torch.maximum(x, x.amax(dim=(1, 2), keepdim=True) - self.top_db)
        return x


class MFCC(nn.Module):
    """(B, n) -> (B, n_mfcc, T), matching :func:`ser.features.mfcc`."""

    def __init__(self, fc: FeatureConfig, top_db: float | None = 80.0):
        super().__init__()
        self.logmel = LogMel(fc, top_db)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(fc.n_mfcc, fc.n_mels)), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.dct @ self.logmel(y)


def spec_augment(x: torch.Tensor, *, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_width: float = 0.1) -> torch.Tensor:
    """SpecAugment masks on (B, F, T), filled with each item's mean; a new tensor."""
    B, Fq, T = x.shape
    x = x.clone()
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    mask = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(freq_masks):
        w = torch.randint(0, freq_width + 1, (B, 1, 1), device=x.device)
        f0 = (torch.rand(B, 1, 1, device=x.device) * (Fq - w)).long()
        idx = torch.arange(Fq, device=x.device).view(1, Fq, 1)
        mask |= (idx >= f0) & (idx < f0 + w)
    max_t = max(1, int(time_width * T))
    for _ in range(time_masks):
        w = torch.randint(0, max_t + 1, (B, 1, 1), device=x.device)
        t0 = (torch.rand(B, 1, 1, device=x.device) * (T - w)).long()
        idx = torch.arange(T, device=x.device).view(1, 1, T)
        mask |= (idx >= t0) & (idx < t0 + w)
    return torch.where(mask, fill, x)


class _SpecModel(nn.Module):
    """Base for models over a (B, F, T) spectral representation."""

    spec_augment = False

    def features(self, y: torch.Tensor) -> torch.Tensor:
        x = self.frontend(y)
        x = x - x.mean(dim=-1, keepdim=True)  # per-utterance, per-band mean removal
        if self.training and self.spec_augment:
            x = spec_augment(x)
        return x


# --- the student architectures -------------------------------------------------------
class GRUNet(_SpecModel):
    """GRU over MFCC frames (the original project: hidden 32, 3 layers)."""

    def __init__(self, fc: FeatureConfig, n_classes: int, hidden: int = 32, layers: int = 3, dropout: float = 0.2):
        super().__init__()
        self.frontend = MFCC(fc)
        self.norm = nn.BatchNorm1d(fc.n_mfcc)
        self.gru = nn.GRU(fc.n_mfcc, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.features(y)).transpose(1, 2)  # (B, T, C)
        _, h = self.gru(x)  # h: (layers, B, H)
        return self.head(h[-1])


class CNN1D(_SpecModel):
    """1D convolutions over MFCC frames."""

    def __init__(self, fc: FeatureConfig, n_classes: int, channels: tuple[int, ...] = (64, 128, 128), dropout: float = 0.3):
        super().__init__()
        self.frontend = MFCC(fc)
        layers, c_in = [nn.BatchNorm1d(fc.n_mfcc)], fc.n_mfcc
        for c in channels:
            layers += [nn.Conv1d(c_in, c, 5, padding=2), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, n_classes))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.features(y)).mean(dim=-1))


class CNN2D(_SpecModel):
    """2D convolutions over the log-mel spectrogram."""

    def __init__(self, fc: FeatureConfig, n_classes: int, channels: tuple[int, ...] = (16, 32, 64, 64), dropout: float = 0.3):
        super().__init__()
        self.frontend = LogMel(fc)
        layers, c_in = [nn.BatchNorm2d(1)], 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, n_classes))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.body(self.features(y).unsqueeze(1))  # (B, C, F', T')
        return self.head(x.mean(dim=(2, 3)))


class M5(nn.Module):
    """M5 on the raw waveform (Dai et al. 2017, the torchaudio tutorial's sizes)."""

    def __init__(self, fc: FeatureConfig, n_classes: int, channels: int = 32, stride: int = 16):
        super().__init__()
        c = channels
        self.body = nn.Sequential(
            nn.Conv1d(1, c, 80, stride=stride), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(c, c, 3), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(c, 2 * c, 3), nn.BatchNorm1d(2 * c), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(2 * c, 2 * c, 3), nn.BatchNorm1d(2 * c), nn.ReLU(), nn.MaxPool1d(4),
        )
        self.head = nn.Linear(2 * c, n_classes)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = y / (y.abs().amax(dim=-1, keepdim=True) + 1e-6)  # peak-normalise each clip
        return self.head(self.body(y.unsqueeze(1)).mean(dim=-1))


class LogReg(nn.Module):
    """Multinomial logistic regression on standardised pooled statistics."""

    input_kind = "pooled"

    def __init__(self, fc: FeatureConfig, n_classes: int, n_features: int = 260):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)


# --- the default: a frozen Whisper encoder + a linear head ----------------------------
class WhisperSER(nn.Module):
    """Frozen Whisper-base encoder (its first ``max(layers) + 1`` blocks), mean and standard
    deviation over time of the chosen ``layers``, standardised, then a linear head.

    Only the head (``linear``) and the standardisation (``mean``, ``std``) are trained; the
    encoder is stored in float16 in the model folder (``store_half``) and run in float32."""

    store_half = ("encoder.",)

    def __init__(self, fc: FeatureConfig, n_classes: int, layers: Sequence[int] = (0, 1, 2, 3), d: int = 512,
                 n_heads: int = 8, adapt: Sequence[str] = ()):
        super().__init__()
        from .whisper import WhisperEncoder, WhisperLogMel

        self.layers = tuple(int(i) for i in layers)
        self.logmel = WhisperLogMel()
        self.encoder = WhisperEncoder(d, n_heads, max(self.layers) + 1)
        n = 2 * d * len(self.layers)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.linear = nn.Linear(n, n_classes)
        # heads for group-centred features (ser.adapt): "batch" (trained per corpus), "speaker"
        self.adapt = nn.ModuleDict({m: AdaptHeadModule(n, n_classes) for m in adapt}) if adapt else None

    def pooled(self, y: torch.Tensor) -> torch.Tensor:
        """(B, n) equal-length clips -> (B, 2·d·len(layers)) pooled encoder features."""
        from .whisper import mean_std

        hidden = self.encoder(self.logmel(y))
        return torch.cat([mean_std(hidden[i]) for i in self.layers], dim=1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(y))


class AdaptHeadModule(nn.Module):
    """The stored form of a :class:`ser.adapt.AdaptHead` (applied in NumPy by ``ser.adapt``)."""

    def __init__(self, n: int, n_classes: int):
        super().__init__()
        for name in ("prior_mean", "mean"):
            self.register_buffer(name, torch.zeros(n))
        for name in ("prior_var", "std"):
            self.register_buffer(name, torch.ones(n))
        self.register_buffer("spread_ref", torch.ones(()))
        self.linear = nn.Linear(n, n_classes)


# --- the earlier default ---------------------------------------------------------------
class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        self.pool = nn.AvgPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.pool(F.relu(h + self.skip(x)))


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time: (B, C, T) -> (B, 2C)."""

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.attn = nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.Tanh(), nn.Conv1d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attn(x), dim=-1)
        mu = (w * x).sum(dim=-1)
        var = (w * x.square()).sum(dim=-1) - mu.square()
        return torch.cat([mu, var.clamp(min=1e-6).sqrt()], dim=1)


class SERCNN(_SpecModel):
    """The default until v0.5: residual CNN on normalised log-mel + attentive statistics pooling."""

    spec_augment = True

    def __init__(self, fc: FeatureConfig, n_classes: int, channels: tuple[int, ...] = (16, 32, 64, 128),
                 dropout: float = 0.3):
        super().__init__()
        self.frontend = LogMel(fc)
        self.input_norm = nn.BatchNorm2d(1)
        stem = channels[0]
        self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(), nn.AvgPool2d(2))
        blocks, c_in = [], stem
        for i, c in enumerate(channels[1:]):
            blocks.append(_ResBlock(c_in, c, (2, 2) if i < len(channels) - 2 else (2, 1)))
            c_in = c
        self.body = nn.Sequential(*blocks)
        freq_out = fc.n_mels // 2 ** len(channels)
        self.proj = nn.Sequential(nn.Conv1d(c_in * freq_out, 128, 1), nn.BatchNorm1d(128), nn.ReLU())
        self.pool = AttentiveStatsPool(128)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(256, n_classes))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(self.features(y).unsqueeze(1))  # (B, 1, M, T)
        x = self.body(self.stem(x))  # (B, C, M/16, T/8)
        B, C, Fq, T = x.shape
        x = self.proj(x.reshape(B, C * Fq, T))  # (B, 128, T/8)
        return self.head(self.pool(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "whisper": WhisperSER, "sercnn": SERCNN, "gru": GRUNet, "cnn1d": CNN1D, "cnn2d": CNN2D, "m5": M5, "logreg": LogReg,
}
DEFAULT_ARCH = "whisper"


def build_model(arch: str, fc: FeatureConfig, n_classes: int, **arch_args: Any) -> nn.Module:
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ModelError(f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}.") from None
    return cls(fc, n_classes, **arch_args)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    #: ser.adapt settings and calibration per adaptation head ("batch", "speaker"); empty: none
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
            from .whisper import WhisperFrames

            frames = self._frames = WhisperFrames(self.net.encoder, self.net.layers).to(self.device)
        return frames

    def pooled_spans(self, y: np.ndarray, sr: int, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """Pooled encoder features (len(spans), F) of several ``(start, end)`` sample spans of one
        stretch of audio ``y``: ``y`` is encoded once (in 30-s pieces) and each span pools its
        20-ms frames. A span shorter than the model's minimum gets a row of NaN. Whisper models only."""
        from .whisper import SECONDS_PER_POSITION, mean_std

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


__all__ = [
    "ARCHITECTURES", "DEFAULT_ARCH", "EmotionModel", "LogMel", "MFCC", "ModelCard", "WhisperSER", "build_model",
    "count_parameters", "load_model", "save_model", "spec_augment",
]
