"""The emotion networks (torch): feature front ends, the architectures the trainer can
build, and :func:`build_model`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ser.errors import ModelError
from ser.emotion.features import FeatureConfig, dct_matrix, mel_filterbank


# --- feature front ends (the same math as ser.emotion.features, batched in torch) ----------
class LogMel(nn.Module):
    """(B, n) waveform -> (B, n_mels, T) log-mel in dB, matching :func:`ser.emotion.features.log_mel`.

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
    """(B, n) -> (B, n_mfcc, T), matching :func:`ser.emotion.features.mfcc`."""

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
        from ser.emotion.whisper import WhisperEncoder, WhisperLogMel

        self.layers = tuple(int(i) for i in layers)
        self.logmel = WhisperLogMel()
        self.encoder = WhisperEncoder(d, n_heads, max(self.layers) + 1)
        n = 2 * d * len(self.layers)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.linear = nn.Linear(n, n_classes)
        # heads for group-centred features (ser.emotion.adapt): "batch" (trained per corpus), "speaker"
        self.adapt = nn.ModuleDict({m: AdaptHeadModule(n, n_classes) for m in adapt}) if adapt else None

    def pooled(self, y: torch.Tensor) -> torch.Tensor:
        """(B, n) equal-length clips -> (B, 2·d·len(layers)) pooled encoder features."""
        from ser.emotion.whisper import mean_std

        hidden = self.encoder(self.logmel(y))
        return torch.cat([mean_std(hidden[i]) for i in self.layers], dim=1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pooled(y))


class AdaptHeadModule(nn.Module):
    """The stored form of a :class:`ser.emotion.adapt.AdaptHead` (applied in NumPy by ``ser.emotion.adapt``)."""

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
