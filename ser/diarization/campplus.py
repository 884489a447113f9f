"""CAM++ speaker embeddings (3D-Speaker), loaded from ``models/diarization/campplus.safetensors``.

The network is the ``speech_campplus_sv_zh_en_16k-common_advanced`` model of 3D-Speaker
(Apache-2.0; Wang et al. 2023, "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking", arXiv:2303.00332), re-implemented here from
``speakerlab/models/campplus`` so that its weights load by name from safetensors (no
unpickling, no third-party package at run time). Input: 80-band Kaldi log-mel filterbank
at 10 ms with the window's mean removed; output: a 192-d embedding, compared by cosine.

``fbank`` computes the filterbank of a whole recording once; ``embed_windows`` slices
it per window (windows of one length batched), so overlapping windows cost no repeated
feature extraction.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ser.errors import ModelError

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "diarization" / "campplus.safetensors"
EMBED_DIM = 192


def _bn_relu(ch: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(ch)), ("relu", nn.ReLU(inplace=True))]))


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    """2-D convolutional front end over (frequency, time)."""

    def __init__(self, ch: int = 32, feat_dim: int = 80):
        super().__init__()
        self.conv1 = nn.Conv2d(1, ch, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.layer1 = nn.Sequential(_ResBlock(ch, ch, 2), _ResBlock(ch, ch, 1))
        self.layer2 = nn.Sequential(_ResBlock(ch, ch, 2), _ResBlock(ch, ch, 1))
        self.conv2 = nn.Conv2d(ch, ch, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.out_channels = ch * (feat_dim // 8)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[3])


class _TDNN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation, dilation=dilation,
                                bias=False)
        self.nonlinear = _bn_relu(cout)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class _CAMLayer(nn.Module):
    """Context-aware masking: a local convolution gated by utterance- and segment-level context."""

    def __init__(self, cin: int, cout: int, k: int, dilation: int, reduction: int = 2):
        super().__init__()
        self.linear_local = nn.Conv1d(cin, cout, k, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(cin, cin // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(cin // reduction, cout, 1)

    def forward(self, x, seg_len: int = 100):
        y = self.linear_local(x)
        seg = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
        seg = seg.unsqueeze(-1).expand(*seg.shape, seg_len).reshape(*seg.shape[:-1], -1)[..., : x.shape[-1]]
        context = x.mean(-1, keepdim=True) + seg
        return y * torch.sigmoid(self.linear2(self.relu(self.linear1(context))))


class _DenseTDNNLayer(nn.Module):
    def __init__(self, cin: int, cout: int, bn_ch: int, k: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, bn_ch, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_ch)
        self.cam_layer = _CAMLayer(bn_ch, cout, k, dilation)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.ModuleList):
    def __init__(self, n: int, cin: int, cout: int, bn_ch: int, k: int, dilation: int):
        super().__init__()
        for i in range(n):
            self.add_module(f"tdnnd{i + 1}", _DenseTDNNLayer(cin + i * cout, cout, bn_ch, k, dilation))

    def forward(self, x):
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.nonlinear = _bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class _StatsPool(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(-1), x.std(-1, unbiased=True)], dim=-1)


class _Dense(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(cout, affine=False))]))

    def forward(self, x):
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    def __init__(self, feat_dim: int = 80, embedding_size: int = EMBED_DIM, growth: int = 32, bn_size: int = 4,
                 init_channels: int = 128):
        super().__init__()
        self.head = _FCM(feat_dim=feat_dim)
        ch = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([("tdnn", _TDNN(ch, init_channels, 5, stride=2))]))
        ch = init_channels
        for i, (n, k, d) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector.add_module(f"block{i + 1}", _DenseBlock(n, ch, growth, bn_size * growth, k, d))
            ch += n * growth
            self.xvector.add_module(f"transit{i + 1}", _Transit(ch, ch // 2))
            ch //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(ch))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _Dense(ch * 2, embedding_size))

    def forward(self, feats):  # (B, T, 80) → (B, 192)
        return self.xvector(self.head(feats.permute(0, 2, 1)))


_MODEL: CAMPPlus | None = None
_LOCK = threading.Lock()


def load(path: Path = WEIGHTS) -> CAMPPlus:
    """The shared CAM++ network (inference only; a forward pass keeps no state, so threads may share it)."""
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                from safetensors.torch import load_file
                if not path.is_file():
                    raise ModelError(f"The CAM++ speaker-embedding weights are missing ({path}). They ship with the "
                                     "project in models/diarization/; restore them from git "
                                     "(or rebuild with scripts/convert_diarization_models.py).")
                m = CAMPPlus()
                missing, unexpected = m.load_state_dict(load_file(str(path)), strict=False)
                missing = [k for k in missing if not k.endswith("num_batches_tracked")]
                if missing or unexpected:
                    raise ModelError(f"{path} does not hold CAM++ weights (missing {missing[:3]}, "
                                     f"unexpected {unexpected[:3]}).")
                _MODEL = m.eval()
    return _MODEL


_FAST: torch.nn.Module | None = None


class _Optimised(nn.Module):
    """A graph already optimised for inference, run as it is: without the graph executor's own
    profiling, which would specialise (compile and keep) a new graph for every new batch shape —
    seconds on the first calls and memory on a long recording's many window lengths. The switch is
    per thread, so other TorchScript models (silero) in other threads are untouched."""

    def __init__(self, graph: torch.jit.ScriptModule):
        super().__init__()
        self.graph = graph

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.jit.optimized_execution(False):
            return self.graph(feats)


def optimise() -> torch.nn.Module:
    """Prepare CAM++ for serving: traced, batch norms folded into the convolutions and weights laid
    out for oneDNN (``torch.jit.optimize_for_inference``). On this 2-core CPU that takes a 30-s
    clip's embeddings from about 0.38 to 0.30 s and an hour's diarization from RTF 0.016 to 0.014,
    equal to the eager network within 1e-5; it costs about 3 s to build (docs/diarization.md,
    bench/results/diarization_speed.json). The servers' background warm-up builds it; a one-off
    command keeps the eager network, which starts faster. If tracing fails the eager one stays."""
    global _FAST
    model = load()
    with _LOCK:
        if _FAST is None:
            try:
                with torch.inference_mode():
                    traced = torch.jit.trace(model, torch.zeros(1, 150, 80), check_trace=False)
                    fast = _Optimised(torch.jit.optimize_for_inference(traced))
                    probe = torch.randn(2, 150, 80, generator=torch.Generator().manual_seed(0))
                    same = torch.allclose(fast(probe), model(probe), atol=1e-4)
                if not same:
                    raise RuntimeError("the optimised CAM++ disagrees with the eager network")
                _FAST = fast
            except Exception:  # noqa: BLE001 - an older torch or an odd build: the eager network is correct
                _FAST = model
    return _FAST


def network() -> torch.nn.Module:
    """The network embeddings are computed with: the optimised one once :func:`optimise` has built
    it, else the eager one."""
    return _FAST if _FAST is not None else load()


def fbank(y: np.ndarray, sr: int = 16000, *, block_s: float = 120.0) -> np.ndarray:
    """80-band Kaldi log-mel filterbank at 10 ms (25 ms frames, no dither), shape (frames, 80).

    Frame ``i`` covers samples ``[160 i, 160 i + 400)``; computed in blocks so an hour
    never holds more than one block's spectrum."""
    from torchaudio.compliance import kaldi
    hop, win = sr // 100, sr * 25 // 1000
    n = max(0, 1 + (len(y) - win) // hop)
    out = np.zeros((n, 80), np.float32)
    per = int(block_s * 100)
    x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    for f0 in range(0, n, per):
        f1 = min(n, f0 + per)
        seg = x[f0 * hop: (f1 - 1) * hop + win]
        out[f0:f1] = kaldi.fbank(seg[None], num_mel_bins=80, sample_frequency=sr, dither=0.0).numpy()[: f1 - f0]
    return out


def embed_windows(feats: np.ndarray, windows: np.ndarray, *, batch: int = 8, progress=None) -> np.ndarray:
    """Unit-norm CAM++ embeddings of ``windows`` ((W, 2) frame ranges of ``feats``).

    Windows of one length are batched together; each window's mean is removed first. The
    batches are independent tasks (:func:`ser.threads.parallel_map`): with two workers a batch
    is at most a sixth of the windows, so neither worker waits long for the other at the end."""
    from ser import threads

    model = network()
    W = len(windows)
    out = np.zeros((W, EMBED_DIM), np.float32)
    if W == 0:
        return out
    workers = threads.task_workers()
    if workers > 1:
        batch = int(min(batch, max(4, -(-W // (3 * workers)))))
    lengths = np.clip(windows[:, 1], 0, len(feats)) - np.clip(windows[:, 0], 0, len(feats))
    tasks = []
    for L in np.unique(lengths):
        idx = np.flatnonzero(lengths == L)
        tasks += [(idx[i:i + batch], int(max(L, 20))) for i in range(0, len(idx), batch)]
    tasks.sort(key=lambda t: -len(t[0]) * t[1])

    def run(task: tuple[np.ndarray, int]) -> np.ndarray:
        sel, L = task
        X = np.zeros((len(sel), L, 80), np.float32)
        for j, w in enumerate(sel):
            a = int(max(0, windows[w, 0]))
            seg = feats[a: a + L]
            X[j, : len(seg)] = seg
            X[j, len(seg):] = seg.mean(0) if len(seg) else 0.0
        X -= X.mean(1, keepdims=True)
        with torch.inference_mode():
            return model(torch.from_numpy(X)).numpy()

    def finished(k: int) -> None:
        if progress is not None:
            progress(min(1.0, k / len(tasks)))

    for (sel, _), emb in zip(tasks, threads.parallel_map(run, tasks, on_done=finished)):
        out[sel] = emb
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-9
    return out

