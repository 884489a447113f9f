"""Who spoke when: speaker turns from a recording, with two backends.

``builtin`` (the default) is fully offline; its networks ship in ``models/diarization/``
as safetensors (pyannote segmentation-3.0, MIT; CAM++ from 3D-Speaker, Apache-2.0):

1. voice activity and overlap: segmentation-3.0 over 10-s chunks every 5 s gives the
   expected number of people talking in each 10 ms frame; speech is where it exceeds
   ``vad_threshold`` (silero-vad remains as ``vad="silero"``);
2. speaker embeddings: CAM++ on ``window_s`` windows every ``hop_s`` inside speech (every
   ``long_hop_s`` for recordings longer than ``dense_max_s``, to keep an hour fast);
3. clustering: average-linkage clustering of the windows cut where clusters are less
   similar than ``merge_similarity`` (with a minute of speech or more, on the refined
   neighbourhood similarity of ``ser.clustering``, cut at ``refined_similarity``), a
   speaker with under ``min_cluster_s`` of speech joining the nearest one (or the count you
   give / bound); ``clustering="spectral"`` keeps the eigengap method;
4. resegmentation: every 10 ms speech frame takes the speaker whose centroid is most
   similar to the windows covering it, smoothed over ``smoothing_s``; where
   segmentation-3.0 hears two people (``overlap``), the second most similar speaker is
   added.

``method="segmentation"`` is the other, pyannote-style path: local speakers of each
chunk, one CAM++ embedding per local speaker, global clustering with the constraint that
two local speakers of a chunk differ, and reconstruction with segmentation-3.0's count.

Stages 1–2 (``embed``) do not depend on the speaker count; stages 3–4 (``assign``) are
cheap, so changing the number of speakers re-runs only those.

``pyannote`` runs a pyannote.audio 4 pipeline from a local folder or a Hugging Face id
with a token the user provides. Telemetry stays off unless ``PYANNOTE_METRICS_ENABLED``
is set by the user.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .analysis import SpeakerTurn, to_annotation  # noqa: F401  (re-exported for scoring)
from .clustering import _ahc, _merge_clusters, cluster_windows  # noqa: F401  (re-exported)
from .errors import ConfigError, ModelError

FRAME_S = 0.01  # 10 ms frames for VAD regions, mel frames and resegmentation
Progress = Callable[[str, float], None]  # (stage, fraction done)


def _noop(stage: str, frac: float) -> None:
    pass


def check_speaker_counts(num_speakers: int | None, min_speakers: int | None,
                         max_speakers: int | None) -> tuple[int | None, int, int | None]:
    """Validate the count options; returns ``(exact, minimum, maximum)``."""
    for name, v in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise ConfigError(f"{name} must be a whole number ≥ 1 (got {v!r}).")
    if num_speakers is not None and (min_speakers is not None or max_speakers is not None):
        raise ConfigError("Give either an exact number of speakers or a minimum/maximum, not both.")
    lo = min_speakers or 1
    if max_speakers is not None and max_speakers < lo:
        raise ConfigError(f"max_speakers ({max_speakers}) is below min_speakers ({lo}).")
    return num_speakers, lo, max_speakers


class Diarizer(Protocol):
    name: str

    def settings(self) -> dict: ...

    def __call__(self, y: np.ndarray, sr: int, *, num_speakers: int | None = None,
                 min_speakers: int | None = None, max_speakers: int | None = None,
                 progress: Progress | None = None) -> list[SpeakerTurn]: ...


# --- builtin -------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltinSettings:
    """Chosen on the simulated development set (bench/diarization_eval.py, docs/diarization.md);
    the six real shared recordings are only checked."""

    embedder: str = "campplus"  # or "resemblyzer" (the d-vector encoder used before CAM++)
    vad: str = "segmentation"  # speech where segmentation-3.0 hears anyone (count > vad_threshold), or "silero"
    vad_threshold: float = 0.5
    min_speech_s: float = 0.1
    min_silence_s: float = 0.1
    speech_pad_s: float = 0.1
    window_s: float = 1.5
    hop_s: float = 0.75
    dense_max_s: float = 600.0  # recordings up to this long get windows every hop_s …
    long_hop_s: float = 1.5  # … longer ones every long_hop_s (diarization RTF ≤ 0.02 at 60 min)
    clustering: str = "ahc"  # average linkage cut at merge_similarity, or "spectral" (eigengap, then merges)
    merge_similarity: float = 0.35  # clusters less similar than this (cosine) are different speakers
    refine_min_speech_s: float = 60.0  # with this much speech, cluster on the refined similarity …
    refine_share: float = 0.3  # … each window's neighbourhood: its most similar 30 % of the windows
    refine_mix: float = 0.5  # … half neighbourhood likeness, half the windows' own cosine
    refined_similarity: float = 0.40  # … cut there (ser.clustering.refined_similarity)
    overcluster: int = 0  # spectral: start from the eigengap count plus this many, then merge
    prune: float = 0.3  # spectral: keep this fraction of the strongest affinities per row
    min_cluster_s: float = 6.0  # a "speaker" with less speech than this joins the nearest one …
    min_cluster_share: float = 0.15  # … or than this share of all speech, when that is less (short clips)
    max_speakers: int = 10
    smoothing_s: float = 0.3
    min_turn_s: float = 0.3  # shorter runs merge into their neighbours
    max_cluster_points: int = 1500  # beyond this many windows, cluster a subsample and assign the rest
    overlap: bool = True  # a second speaker where segmentation-3.0 hears two people
    overlap_threshold: float = 1.5  # expected number of talkers at or above which a frame is overlapped
    min_overlap_s: float = 0.1
    segmentation_step_s: float = 5.0
    method: str = "windows"  # or "segmentation": local speakers of segmentation-3.0 + CAM++ + global clustering


@dataclass
class Embeddings:
    """The speaker-count-independent part of a builtin diarization."""

    regions: np.ndarray  # (R, 2) speech regions in frames [start, end)
    windows: np.ndarray  # (W, 2) embedding windows in frames [start, end)
    vectors: np.ndarray  # (W, D) unit-norm embeddings
    n_frames: int
    duration_s: float = 0.0
    count: np.ndarray | None = None  # expected number of talking people per frame (segmentation-3.0)
    hop_s: float = 0.0  # the window hop used (long recordings use a longer one)
    local: Any = None  # segmentation path: ser.segmentation.LocalSpeakers (vectors are its embeddings)


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


def _resemblyzer():
    """The d-vector encoder, shared: a stateless LSTM forward, safe to call from several threads."""
    global _ENCODER
    if _ENCODER is None:
        with _LOAD_LOCK:
            if _ENCODER is None:
                from resemblyzer import VoiceEncoder
                _ENCODER = VoiceEncoder(device="cpu", verbose=False)
    return _ENCODER


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


def _mel_frames(y: np.ndarray, sr: int, *, block_s: float = 60.0) -> np.ndarray:
    """resemblyzer's input: 40-band power mel at 10 ms (25 ms windows), computed in blocks with torch.

    Matches ``resemblyzer.audio.wav_to_mel_spectrogram`` (librosa, centred frames) but runs
    ~5× faster and never holds more than one block's spectrum.
    """
    import torch
    import librosa
    n_fft, hop = 400, 160
    fb = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=40).astype(np.float32))
    window = torch.hann_window(n_fft)
    # volume normalisation to -30 dBFS as resemblyzer's preprocess_wav does
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) + 1e-12
    gain = 10 ** (-30 / 20) / rms
    n_frames = 1 + len(y) // hop
    out = np.empty((n_frames, 40), dtype=np.float32)
    block = int(block_s * sr) // hop * hop
    pad = n_fft // 2
    yp = np.pad(y.astype(np.float32, copy=False), pad, mode="constant")  # librosa ≥0.10 pads with zeros
    for f0 in range(0, n_frames, block // hop):
        f1 = min(n_frames, f0 + block // hop)
        seg = torch.from_numpy(yp[f0 * hop: (f1 - 1) * hop + n_fft]) * gain
        spec = torch.stft(seg, n_fft, hop, window=window, center=False, return_complex=True).abs().pow(2)
        out[f0:f1] = (fb @ spec).T.numpy()[: f1 - f0]
    return out


def _windows_in(regions: np.ndarray, win: int, hop: int, n_frames: int) -> np.ndarray:
    """Embedding windows (in frames) covering every speech region; short regions get one centred window."""
    out = []
    for a, b in regions:
        if b - a <= win:
            c = (a + b) // 2
            s = int(np.clip(c - win // 2, 0, max(0, n_frames - win)))
            out.append((s, s + win))
            continue
        starts = np.arange(a, b - win + 1, hop)
        if starts[-1] + win < b:  # cover the tail
            starts = np.append(starts, b - win)
        out.extend((int(s), int(s) + win) for s in starts)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _embed_resemblyzer(y: np.ndarray, sr: int, windows_s: tuple[float, float], regions: np.ndarray,
                       progress: Progress, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    import torch
    mel = _mel_frames(y, sr)
    win, hop = int(round(windows_s[0] / FRAME_S)), int(round(windows_s[1] / FRAME_S))
    windows = _windows_in(regions, win, hop, len(mel))
    enc = _resemblyzer()
    vecs = np.empty((len(windows), 256), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            chunk = np.stack([mel[a:b] if b <= len(mel) else np.pad(mel[a:], ((0, b - len(mel)), (0, 0)))
                              for a, b in windows[i:i + batch]])
            vecs[i:i + batch] = enc(torch.from_numpy(chunk)).numpy()
            progress("speaker embeddings", min(1.0, (i + batch) / len(windows)))
    return windows, vecs


CARD = Path(__file__).resolve().parents[1] / "models" / "diarization" / "card.json"


def diarizer_card() -> dict:
    """The builtin diarizer's card (its networks, licences, training data and measured figures);
    an empty dict when the file is missing or unreadable."""
    try:
        return json.loads(CARD.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def warm_up() -> None:
    """Load the diarization networks (segmentation-3.0, CAM++ optimised for serving, one silero
    instance) and run each once, so that the first recording after a server starts does not pay
    for it; later recordings embed faster (:func:`ser.campplus.optimise`)."""
    import torch

    from . import campplus, segmentation
    with torch.inference_mode():
        segmentation.load()(torch.zeros(1, 1, int(segmentation.CHUNK_S * 16000)))
        campplus.optimise()(torch.zeros(1, 150, 80))
    with VAD_POOL.borrow():
        pass


def warm_up_in_background() -> threading.Thread | None:
    """:func:`warm_up` in a daemon thread (``SER_WARM_DEMO=0`` turns it off, as the tests do)."""
    if os.environ.get("SER_WARM_DEMO", "1") == "0":
        return None

    def run() -> None:
        try:
            warm_up()
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only means the first analysis waits
            print(f"ser: warming the diarizer failed ({exc}); the first analysis will be slower", flush=True)

    t = threading.Thread(target=run, name="ser-warm-diarizer", daemon=True)
    t.start()
    return t


def _embed_campplus(y: np.ndarray, sr: int, windows_s: tuple[float, float], regions: np.ndarray,
                    progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    from . import campplus
    feats = campplus.fbank(y, sr)
    win, hop = int(round(windows_s[0] / FRAME_S)), int(round(windows_s[1] / FRAME_S))
    windows = _windows_in(regions, win, hop, len(feats))
    return windows, campplus.embed_windows(feats, windows, progress=lambda f: progress("speaker embeddings", f))


def embed(y: np.ndarray, sr: int, settings: BuiltinSettings = BuiltinSettings(), *,
          progress: Progress | None = None) -> Embeddings:
    """Stages 1–2: speech regions and one embedding per window."""
    progress = progress or _noop
    s = settings
    progress("voice activity", 0.0)
    n_frames = 1 + len(y) // int(sr * FRAME_S)
    count = None
    if s.method == "segmentation":
        from . import segmentation
        loc = segmentation.local_speakers(y, sr, step_s=s.segmentation_step_s,
                                          progress=lambda f: progress("speaker embeddings", f))
        count = np.pad(loc.count, (0, max(0, n_frames - len(loc.count))))[:n_frames]
        regions = _regions_from_activity(count > s.vad_threshold, s)
        progress("voice activity", 1.0)
        return Embeddings(regions, np.zeros((0, 2), np.int64), loc.vectors, n_frames, len(y) / sr, count, loc)
    if s.overlap or s.vad == "segmentation":
        from . import segmentation
        count = segmentation.speaker_count(y, sr, step_s=s.segmentation_step_s,
                                           progress=lambda f: progress("voice activity", 0.9 * f))
        count = np.pad(count, (0, max(0, n_frames - len(count))))[:n_frames]
    if s.vad == "segmentation":
        regions = _regions_from_activity(count > s.vad_threshold, s)
    else:
        regions = speech_regions(y, sr, s)
    progress("voice activity", 1.0)
    dim = 256 if s.embedder == "resemblyzer" else 192
    if len(regions) == 0:
        return Embeddings(regions, np.zeros((0, 2), np.int64), np.zeros((0, dim), np.float32), n_frames,
                          len(y) / sr, count)
    progress("speaker embeddings", 0.0)
    hop = s.hop_s if len(y) / sr <= s.dense_max_s else s.long_hop_s  # long recordings: the fast path
    fn = _embed_resemblyzer if s.embedder == "resemblyzer" else _embed_campplus
    windows, vecs = fn(y, sr, (s.window_s, hop), regions, progress)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
    return Embeddings(regions, windows, vecs, n_frames, len(y) / sr, count, hop_s=hop)


def window_seconds(emb: Embeddings) -> np.ndarray:
    """Seconds of speech each window stands for: its region's length shared among the region's windows."""
    if len(emb.windows) == 0:
        return np.zeros(0)
    mid = (emb.windows[:, 0] + emb.windows[:, 1]) // 2
    region = np.clip(np.searchsorted(emb.regions[:, 0], mid, side="right") - 1, 0, len(emb.regions) - 1)
    length = (emb.regions[:, 1] - emb.regions[:, 0]) * FRAME_S
    per = np.bincount(region, minlength=len(emb.regions))
    return length[region] / np.maximum(per[region], 1)


def _frame_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, label) runs of a label array."""
    if len(labels) == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, ends)]


def assign(emb: Embeddings, settings: BuiltinSettings = BuiltinSettings(), *, num_speakers: int | None = None,
           min_speakers: int | None = None, max_speakers: int | None = None,
           progress: Progress | None = None) -> list[SpeakerTurn]:
    """Stages 3–4: cluster the windows, then give every speech frame a speaker."""
    from scipy.ndimage import uniform_filter1d
    progress = progress or _noop
    s = settings
    exact, lo, hi = check_speaker_counts(num_speakers, min_speakers, max_speakers)
    hi = hi or s.max_speakers
    if len(emb.regions) == 0:
        return []
    progress("clustering", 0.0)
    if emb.local is not None:
        return _assign_segmented(emb, s, exact, lo, hi)
    if emb.hop_s:
        s = replace(s, hop_s=emb.hop_s)
    V = emb.vectors
    rng = np.random.default_rng(0)
    idx = np.arange(len(V)) if len(V) <= s.max_cluster_points else np.sort(
        rng.choice(len(V), s.max_cluster_points, replace=False))
    sub = V[idx]
    labels = cluster_windows(sub, s, exact, lo, hi, window_seconds(emb)[idx] * len(V) / len(idx))
    K = int(labels.max()) + 1
    C = np.stack([sub[labels == c].mean(0) for c in range(K)])
    C /= np.linalg.norm(C, axis=1, keepdims=True) + 1e-9
    progress("clustering", 1.0)

    # resegmentation: frame scores = mean similarity of covering windows to each centroid
    sim = V @ C.T  # (W, K)
    n = emb.n_frames
    acc = np.zeros((n + 1, K), dtype=np.float64)
    cnt = np.zeros(n + 1, dtype=np.float64)
    a, b = np.clip(emb.windows[:, 0], 0, n), np.clip(emb.windows[:, 1], 0, n)
    np.add.at(acc, a, sim)
    np.add.at(acc, b, -sim)
    np.add.at(cnt, a, 1.0)
    np.add.at(cnt, b, -1.0)
    acc = np.cumsum(acc, axis=0)[:n]
    cnt = np.cumsum(cnt)[:n]
    score = acc / np.maximum(cnt, 1e-9)[:, None]
    smooth = max(1, int(round(s.smoothing_s / FRAME_S)))
    turns: list[SpeakerTurn] = []
    min_turn = int(round(s.min_turn_s / FRAME_S))
    for ra, rb in emb.regions:
        ra, rb = int(ra), int(min(rb, n))
        if rb <= ra:
            continue
        sc = score[ra:rb]
        if smooth > 1 and rb - ra > 1:
            sc = uniform_filter1d(sc, size=min(smooth, rb - ra), axis=0, mode="nearest")
        lab = sc.argmax(1)
        runs = _frame_runs(lab)
        # merge runs shorter than min_turn_s into the longer neighbour, repeatedly
        while len(runs) > 1:
            short = [i for i, (x, y_, _) in enumerate(runs) if y_ - x < min_turn]
            if not short:
                break
            i = min(short, key=lambda j: runs[j][1] - runs[j][0])
            x, y_, _ = runs[i]
            left = runs[i - 1] if i > 0 else None
            right = runs[i + 1] if i + 1 < len(runs) else None
            tgt = left if right is None or (left is not None and left[1] - left[0] >= right[1] - right[0]) else right
            if tgt is left:
                runs[i - 1] = (left[0], y_, left[2])
            else:
                runs[i + 1] = (x, right[1], right[2])
            del runs[i]
            # join equal neighbours
            merged: list[tuple[int, int, int]] = []
            for r in runs:
                if merged and merged[-1][2] == r[2]:
                    merged[-1] = (merged[-1][0], r[1], r[2])
                else:
                    merged.append(r)
            runs = merged
        for x, y_, c in runs:
            turns.append(SpeakerTurn(round((ra + x) * FRAME_S, 3), round((ra + y_) * FRAME_S, 3), f"SPEAKER_{c:02d}"))
        if s.overlap and emb.count is not None and K > 1:
            final = np.empty(rb - ra, np.int64)
            for x, y_, c in runs:
                final[x:y_] = c
            turns.extend(_overlap_turns(sc, final, emb.count[ra:rb], ra, s))
    return _tidy(turns, emb.duration_s or None)


def _assign_segmented(emb: Embeddings, s: BuiltinSettings, exact: int | None, lo: int, hi: int) -> list[SpeakerTurn]:
    """Segmentation path: cluster the local speakers' embeddings, keep two local speakers of one chunk
    apart (each chunk's speakers take distinct clusters, best total similarity), then rebuild turns."""
    from scipy.optimize import linear_sum_assignment

    from . import segmentation
    loc = emb.local
    V = loc.vectors
    if len(V) == 0:
        return []
    # the refined similarity was measured on windows only: local speakers keep the plain cosine
    ss = replace(s, hop_s=s.segmentation_step_s, refine_min_speech_s=float("inf"))
    labels = cluster_windows(V, ss, exact, lo, hi) if len(V) > 1 else np.zeros(1, np.int64)
    K = int(labels.max()) + 1
    C = np.stack([V[labels == k].mean(0) for k in range(K)])
    C /= np.linalg.norm(C, axis=1, keepdims=True) + 1e-9
    sim = V @ C.T
    for c in np.unique(loc.owner[:, 0]):
        rows = np.flatnonzero(loc.owner[:, 0] == c)
        if len(rows) > 1 and len(np.unique(labels[rows])) < len(rows) and K >= len(rows):
            r, k = linear_sum_assignment(-sim[rows])
            labels[rows[r]] = k
    runs = segmentation.reconstruct(loc, labels, min_turn_s=s.min_overlap_s)
    turns = [SpeakerTurn(round(a, 3), round(b, 3), f"SPEAKER_{g:02d}") for a, b, g in runs]
    return _tidy(turns, emb.duration_s or None)


def _overlap_turns(score: np.ndarray, first: np.ndarray, count: np.ndarray, offset: int,
                   s: BuiltinSettings) -> list[SpeakerTurn]:
    """Where segmentation-3.0 hears two people, the speaker with the second-best score talks too."""
    both = count >= s.overlap_threshold
    if not both.any():
        return []
    masked = score.copy()
    masked[np.arange(len(first)), first] = -np.inf
    second = np.where(both, masked.argmax(1), -1)
    out = []
    min_len = int(round(s.min_overlap_s / FRAME_S))
    for x, y_, c in _frame_runs(second):
        if c >= 0 and y_ - x >= min_len:
            out.append(SpeakerTurn(round((offset + x) * FRAME_S, 3), round((offset + y_) * FRAME_S, 3),
                                   f"SPEAKER_{c:02d}"))
    return out


def _tidy(turns: list[SpeakerTurn], duration_s: float | None, join_gap_s: float = 0.05) -> list[SpeakerTurn]:
    """Clip to the recording, join touching turns of one speaker, name speakers by first appearance."""
    out: list[SpeakerTurn] = []
    for t in sorted(turns, key=lambda t: t.start_s):
        end = min(t.end_s, duration_s) if duration_s else t.end_s
        if end <= t.start_s:
            continue
        if out and out[-1].speaker == t.speaker and t.start_s - out[-1].end_s <= join_gap_s:
            out[-1] = SpeakerTurn(out[-1].start_s, max(out[-1].end_s, end), t.speaker)
        else:
            out.append(SpeakerTurn(t.start_s, round(end, 3), t.speaker))
    order: dict[str, str] = {}
    for t in out:
        order.setdefault(t.speaker, f"SPEAKER_{len(order):02d}")
    return [SpeakerTurn(t.start_s, t.end_s, order[t.speaker]) for t in out]


class BuiltinDiarizer:
    """silero-vad + resemblyzer + spectral clustering + resegmentation (offline)."""

    name = "builtin"

    def __init__(self, settings: BuiltinSettings | None = None, **overrides: Any):
        base = settings or BuiltinSettings()
        self.s = BuiltinSettings(**{**asdict(base), **overrides})

    def settings(self) -> dict:
        return {"backend": self.name, **asdict(self.s)}

    def embed(self, y: np.ndarray, sr: int, *, progress: Progress | None = None) -> Embeddings:
        return embed(y, sr, self.s, progress=progress)

    def assign(self, emb: Embeddings, **counts: Any) -> list[SpeakerTurn]:
        return assign(emb, self.s, **counts)

    def __call__(self, y: np.ndarray, sr: int, *, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None, progress: Progress | None = None) -> list[SpeakerTurn]:
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        emb = self.embed(y, sr, progress=progress)
        return self.assign(emb, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
                           progress=progress)


# --- pyannote --------------------------------------------------------------------------
PYANNOTE_DEFAULT = "pyannote/speaker-diarization-community-1"
TOKEN_ENV = ("SER_HF_TOKEN", "HF_TOKEN", "HUGGINGFACE_TOKEN")


def hf_token_from_env() -> str | None:
    for name in TOKEN_ENV:
        if os.environ.get(name):
            return os.environ[name]
    return None


class PyannoteDiarizer:
    """A pyannote.audio 4 pipeline from a local folder (offline) or a Hugging Face id plus token.

    ``source`` is a folder holding the pipeline's ``config.yaml`` (for example a git clone
    of the model repository), a path to such a ``config.yaml``, or a Hugging Face id. A hub
    id needs a token (``token=`` or one of $SER_HF_TOKEN / $HF_TOKEN) and network access;
    $HF_HUB_OFFLINE is lifted only for that call.
    """

    name = "pyannote"

    def __init__(self, source: str | Path | None = None, *, token: str | None = None, device: str = "auto"):
        self.source = str(source or os.environ.get("SER_PYANNOTE_PIPELINE") or PYANNOTE_DEFAULT)
        self.token = token or hf_token_from_env()
        self.device = device
        self._pipeline = None
        # a pipeline keeps per-run state (hooks, instantiated parameters, models moved to a device):
        # one run at a time per instance
        self._lock = threading.RLock()

    def settings(self) -> dict:
        return {"backend": self.name, "source": self.source, "device": self.device}

    def _load(self):
        with self._lock:
            return self._load_locked()

    def _load_locked(self):
        if self._pipeline is not None:
            return self._pipeline
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
        path = Path(self.source).expanduser()
        local = path.exists()
        looks_local = self.source.startswith((".", "/", "~")) or self.source.count("/") != 1 or self.source.endswith(".yaml")
        if not local and looks_local:
            raise ModelError(f"The pyannote pipeline folder {self.source} does not exist. Point to a folder with "
                             "the pipeline's config.yaml, or use the builtin diarizer (--diarizer builtin), "
                             "which works offline.")
        if local:
            cfg = path / "config.yaml" if path.is_dir() else path
            if not cfg.is_file():
                raise ModelError(f"{path} has no config.yaml, so it is not a pyannote pipeline folder. "
                                 "Clone the model repository there, or use the builtin diarizer (--diarizer builtin).")
        elif not self.token:
            raise ModelError(f"The pyannote pipeline {self.source} is on Hugging Face and needs an access token "
                             f"(set ${TOKEN_ENV[0]} or enter it in the sidebar) and network access. Without them, "
                             "use a local pipeline folder or the builtin diarizer (--diarizer builtin), "
                             "which works offline.")
        try:
            from pyannote.audio import Pipeline
        except ImportError as exc:  # pragma: no cover - pinned in requirements
            raise ModelError(f"pyannote.audio is not installed ({exc}); use the builtin diarizer.") from exc
        try:
            if local:
                pipe = Pipeline.from_pretrained(cfg)
            else:
                old = os.environ.pop("HF_HUB_OFFLINE", None)
                try:
                    pipe = Pipeline.from_pretrained(self.source, token=self.token)
                finally:
                    if old is not None:
                        os.environ["HF_HUB_OFFLINE"] = old
        except Exception as exc:  # pyannote/hub raise many types; give one clear message
            raise ModelError(f"Could not load the pyannote pipeline {self.source}: {exc}. "
                             "Check the folder or token, or use the builtin diarizer (--diarizer builtin).") from exc
        if pipe is None:
            raise ModelError(f"Could not load the pyannote pipeline {self.source} (access not granted?). "
                             "Use the builtin diarizer (--diarizer builtin) meanwhile.")
        from .models import pick_device
        dev = pick_device(self.device)
        try:
            pipe.to(dev)
        except Exception:  # some pipelines are CPU-only
            pass
        self._pipeline = pipe
        return pipe

    def __call__(self, y: np.ndarray, sr: int, *, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None, progress: Progress | None = None) -> list[SpeakerTurn]:
        import torch
        progress = progress or _noop
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        pipe = self._load()
        progress("pyannote", 0.0)
        kwargs = {k: v for k, v in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                                    ("max_speakers", max_speakers)) if v is not None}
        wave = {"waveform": torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None], "sample_rate": sr}
        with self._lock:
            out = pipe(wave, **kwargs)
        ann = getattr(out, "speaker_diarization", out)  # pyannote 4 returns an object; 3.x an Annotation
        turns = [SpeakerTurn(round(seg.start, 3), round(seg.end, 3), str(label))
                 for seg, _, label in ann.itertracks(yield_label=True)]
        progress("pyannote", 1.0)
        return sorted(turns, key=lambda t: (t.start_s, t.speaker))


def get_diarizer(name: str = "builtin", **kwargs: Any) -> Diarizer:
    if name == "builtin":
        return BuiltinDiarizer(**kwargs)
    if name == "pyannote":
        return PyannoteDiarizer(**kwargs)
    raise ConfigError(f"Unknown diarizer {name!r}; choose builtin or pyannote.")
