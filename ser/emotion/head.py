"""The logistic-regression head over pooled Whisper features (torch), as trained by
:mod:`ser.training.multicorpus` and used by adaptation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass
class Head:
    """A fitted logistic-regression head over standardised pooled features."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray  # (C, F)
    bias: np.ndarray  # (C,); classes absent from training get a bias of -30 (never chosen)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.std) @ self.weight.T + self.bias

    def into(self, net) -> None:
        import torch

        with torch.no_grad():
            net.mean.copy_(torch.from_numpy(self.mean.astype(np.float32)))
            net.std.copy_(torch.from_numpy(self.std.astype(np.float32)))
            net.linear.weight.copy_(torch.from_numpy(self.weight.astype(np.float32)))
            net.linear.bias.copy_(torch.from_numpy(self.bias.astype(np.float32)))
