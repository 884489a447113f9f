"""segmentation-3.0's network (pyannote's ``PyanNet``) in plain torch, without importing pyannote.audio.

Importing ``pyannote.audio.models.segmentation`` brings in Lightning, torchmetrics, pandas and
matplotlib: +316 MB resident and 2.8 s in every process that diarizes, for a 1.5-M-parameter
network. This is the same network, layer for layer and with the same parameter names, so the
shipped safetensors load into it unchanged (``strict``):

- SincNet (Ravanelli & Bengio 2018, as in pyannote.audio 3–4 and asteroid-filterbanks'
  ``ParamSincFB``): instance-normalised waveform → 80 learned band-pass filters of 251 taps
  (40 cosine, 40 sine), stride 10, magnitude → max-pool 3 → instance norm → leaky ReLU, then
  two 5-tap convolutions (60 channels) with the same pooling and norms;
- a 4-layer bidirectional LSTM (128 per direction), two linear layers (128) with leaky ReLU,
  and a 7-way classifier with log-softmax (the powerset classes).

``tests/test_diarization.py`` checks it against pyannote.audio's own ``PyanNet`` on the same
weights. The band-pass filters depend only on the weights, so they are built once when the
weights are loaded, not on every forward pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FILTERS, KERNEL, STRIDE = 80, 251, 10
MIN_LOW_HZ = MIN_BAND_HZ = 50.0


class _SincFilterbank(nn.Module):
    """asteroid-filterbanks' ``ParamSincFB(80, 251, min_low_hz=50, min_band_hz=50)``: parameters
    and buffers under its names, and the filters it computes from them."""

    def __init__(self):
        super().__init__()
        half = KERNEL // 2
        self.low_hz_ = nn.Parameter(torch.zeros(N_FILTERS // 2, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(N_FILTERS // 2, 1))
        self.register_buffer("window_", torch.from_numpy(np.hamming(KERNEL)[:half]).float())
        self.register_buffer("n_", 2 * np.pi * (torch.arange(-half, 0.0).view(1, -1) / SAMPLE_RATE))

    def filters(self) -> torch.Tensor:
        low = MIN_LOW_HZ + torch.abs(self.low_hz_)
        high = torch.clamp(low + MIN_BAND_HZ + torch.abs(self.band_hz_), MIN_LOW_HZ, SAMPLE_RATE / 2)
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ self.n_, high @ self.n_
        left_cos = ((torch.sin(ft_high) - torch.sin(ft_low)) / (self.n_ / 2)) * self.window_
        left_sin = ((torch.cos(ft_low) - torch.cos(ft_high)) / (self.n_ / 2)) * self.window_
        cos = torch.cat([left_cos, 2 * band.view(-1, 1), torch.flip(left_cos, dims=[1])], dim=1)
        sin = torch.cat([left_sin, torch.zeros_like(band.view(-1, 1)), -torch.flip(left_sin, dims=[1])], dim=1)
        bank = torch.cat([cos / (2 * band[:, None]), sin / (2 * band[:, None])], dim=0)
        return bank.view(N_FILTERS, 1, KERNEL)


class _SincEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.filterbank = _SincFilterbank()
        self._bank: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bank = self._bank if self._bank is not None else self.filterbank.filters()
        return F.conv1d(x, bank, stride=STRIDE)


class SincNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([_SincEncoder(), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(80, affine=True), nn.InstanceNorm1d(60, affine=True),
                                     nn.InstanceNorm1d(60, affine=True)])

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        out = self.wav_norm1d(waveforms)
        for c, (conv, pool, norm) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d)):
            out = conv(out)
            if c == 0:
                out = torch.abs(out)
            out = F.leaky_relu(norm(pool(out)))
        return out


class PyanNet(nn.Module):
    """segmentation-3.0: (batch, 1, samples) at 16 kHz → (batch, frames, 7) log-probabilities of
    the powerset classes (nobody, one of three local speakers, one of three pairs)."""

    def __init__(self):
        super().__init__()
        self.sincnet = SincNet()
        self.lstm = nn.LSTM(60, 128, num_layers=4, bidirectional=True, batch_first=True, dropout=0.5)
        self.linear = nn.ModuleList([nn.Linear(256, 128), nn.Linear(128, 128)])
        self.classifier = nn.Linear(128, 7)

    def freeze_filters(self) -> "PyanNet":
        """Build the band-pass filters once from the loaded weights (inference only)."""
        enc = self.sincnet.conv1d[0]
        with torch.no_grad():
            enc._bank = enc.filterbank.filters().detach().clone()
        return self

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.sincnet(waveforms).transpose(1, 2))
        for linear in self.linear:
            out = F.leaky_relu(linear(out))
        return torch.log_softmax(self.classifier(out), dim=-1)
