"""Stage 1 of the builtin diarizer: where speech is (silero-vad, or segmentation-3.0's
activity), as 10-ms frame regions.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from ser.errors import ConfigError
from ser.diarization.base import BuiltinSettings, FRAME_S, _frame_runs


_ENCODER = None
_LOAD_LOCK = threading.Lock()


@contextmanager
def _keep_threads():
    """Importing silero_vad sets torch to one thread for the whole process: undo that."""
    import torch

    with _LOAD_LOCK:  # the thread count is process-wide: save and restore it in one piece
        threads = torch.get_num_threads()
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def load_vad():
    """A fresh silero-vad model (its own streaming state), without changing torch's thread count."""
    with _keep_threads():
        from silero_vad import load_silero_vad

        return load_silero_vad()


class _VadPool:
    """silero-vad instances lent to one caller at a time.

    A silero model is a TorchScript module that keeps its streaming state in attributes it
    reassigns on every call; two threads calling one instance corrupt the heap (SIGABRT
    "corrupted double-linked list" / SIGSEGV with two concurrent analyses). Each caller
    borrows an instance of its own; instances are created on demand and reused, so there
    are never more than the peak number of concurrent analyses.
    """

    def __init__(self) -> None:
        self._free: list = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self):
        with self._lock:
            vad = self._free.pop() if self._free else None
        if vad is None:
            vad = load_vad()
        try:
            yield vad
        finally:
            vad.reset_states()
            with self._lock:
                self._free.append(vad)


VAD_POOL = _VadPool()


def _speech_probs(y: np.ndarray, model, *, stream_s: float = 60.0, warm_chunks: int = 16) -> list[float]:
    """silero-vad speech probability per 32 ms chunk.

    silero scores 512-sample chunks one after another (its state carries context). A
    long recording is cut into ``stream_s`` streams scored side by side as one batch, each
    warmed up on the half second before it, which is several times faster than one
    stream and agrees with it on ~99 % of frames.
    """
    import torch
    W = 512
    n = -(-len(y) // W)
    per = max(1, int(stream_s * 16000) // W)
    S = -(-n // per)
    warm = warm_chunks if S > 1 else 0
    yp = np.zeros(S * per * W, np.float32)
    yp[: len(y)] = y
    ch = yp.reshape(S, per, W)
    X = np.empty((S, warm + per, W), np.float32)
    X[:, warm:] = ch
    if warm:
        X[0, :warm] = 0.0
        X[1:, :warm] = ch[:-1, per - warm:]
    X = torch.from_numpy(X)
    out = np.empty((S, warm + per), np.float32)
    model.reset_states()
    with torch.inference_mode():
        for i in range(warm + per):
            out[:, i] = model(X[:, i], 16000).reshape(-1).numpy()
    model.reset_states()
    return out[:, warm:].reshape(-1)[:n].tolist()


def speech_regions(y: np.ndarray, sr: int, s: BuiltinSettings) -> np.ndarray:
    """Speech regions in 10 ms frames, shape (R, 2), from silero-vad."""
    with _keep_threads():
        from silero_vad.utils_vad import get_speech_timestamps_from_probs
    if sr != 16000:
        raise ConfigError("The builtin diarizer expects 16 kHz audio (ser.audio.load_audio gives it).")
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak == 0.0:
        return np.zeros((0, 2), dtype=np.int64)
    with VAD_POOL.borrow() as vad:
        probs = _speech_probs(np.ascontiguousarray(y, dtype=np.float32), vad)
    ts = get_speech_timestamps_from_probs(probs, sampling_rate=sr, threshold=s.vad_threshold,
                                          min_speech_duration_ms=int(s.min_speech_s * 1000),
                                          min_silence_duration_ms=int(s.min_silence_s * 1000),
                                          speech_pad_ms=int(s.speech_pad_s * 1000), audio_length_samples=len(y))
    hop = int(sr * FRAME_S)
    return np.array([[t["start"] // hop, -(-t["end"] // hop)] for t in ts], dtype=np.int64).reshape(-1, 2)


def _regions_from_activity(active: np.ndarray, s: BuiltinSettings) -> np.ndarray:
    """Speech regions (frames) from a per-frame activity mask, with silero's post-processing:
    gaps under ``min_silence_s`` closed, runs under ``min_speech_s`` dropped, ``speech_pad_s`` added."""
    runs = [(a, b) for a, b, v in _frame_runs(active.astype(np.int64)) if v]
    gap, short, pad = (int(round(x / FRAME_S)) for x in (s.min_silence_s, s.min_speech_s, s.speech_pad_s))
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = [(max(0, a - pad), min(len(active), b + pad)) for a, b in merged if b - a >= short]
    joined: list[list[int]] = []
    for a, b in out:  # padding may make neighbours touch
        if joined and a <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], b)
        else:
            joined.append([a, b])
    return np.array(joined, dtype=np.int64).reshape(-1, 2)
