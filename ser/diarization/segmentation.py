"""pyannote segmentation-3.0: who is active in each frame of a 10-s chunk, overlap included.

The official ``pyannote/segmentation-3.0`` checkpoint (MIT; Plaquet & Bredin 2023,
"Powerset multi-class cross entropy loss for neural speaker diarization"), stored as
safetensors in ``models/diarization/segmentation-3.0.safetensors`` and loaded into a
plain-torch copy of pyannote.audio's ``PyanNet`` (:mod:`ser.diarization.pyannet`: no
unpickling, and no pyannote.audio import, which costs ~300 MB and ~3 s). Every ~17 ms frame of a 10-s
chunk gets a distribution over the 7 "powerset" classes of up to 3 local speakers with
at most 2 at once: nobody, one of three, or one of three pairs.

``segment`` slides the model over a recording and gives, per 10 ms frame, how many
people talk (0, 1 or 2) — the voice activity and overlap the diarizer uses — and each
chunk's local speakers (:class:`ChunkActivity`), who the second speaker in an overlap is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.errors import ModelError

WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "diarization" / "segmentation-3.0.safetensors"
CHUNK_S = 10.0
# pyannote.audio's hyper-parameters for this checkpoint: what ser.diarization.pyannet implements
# (the tests build pyannote's own PyanNet with them and compare)
HPARAMS = {"sincnet": {"stride": 10},
           "lstm": {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True, "dropout": 0.5,
                    "batch_first": True},
           "linear": {"hidden_size": 128, "num_layers": 2}}

_MODEL = None
_LOCK = threading.Lock()


def load(path: Path = WEIGHTS):
    """The shared segmentation network (a forward pass keeps no state: threads may share it)."""
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                from safetensors.torch import load_file

                from ser.diarization.pyannet import PyanNet
                if not path.is_file():
                    raise ModelError(f"The segmentation-3.0 weights are missing ({path}). They ship with the "
                                     "project in models/diarization/; restore them from git "
                                     "(or rebuild with scripts/convert_diarization_models.py).")
                m = PyanNet()
                try:
                    m.load_state_dict(load_file(str(path)), strict=True)
                except RuntimeError as exc:
                    raise ModelError(f"{path} does not hold segmentation-3.0 weights: {exc}") from exc
                m.freeze_filters()
                _MODEL = m.eval()
    return _MODEL


# powerset class → number of active local speakers: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}
CLASS_COUNT = np.array([0, 1, 1, 1, 2, 2, 2], dtype=np.float32)
# powerset class → which of the 3 local speakers talk
MAPPING = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)


def _chunk_starts(n: int, win: int, step: int) -> np.ndarray:
    """Chunk starts (samples) every ``step``, the last chunk ending at the recording's end."""
    starts = list(range(0, max(1, n - win + step), step))
    if starts[-1] + win < n:
        starts.append(n - win)
    return np.array(starts, dtype=np.int64)


def _chunk_probabilities(y: np.ndarray, starts: np.ndarray, batch: int, progress=None):
    """Yield ``(first chunk index, starts, powerset probabilities (B, F, 7))`` batch by batch.

    The batches are independent tasks (:func:`ser.threads.parallel_map`; with two workers a
    30-s clip's five chunks go as 3 + 2); ``progress(fraction)`` as they finish."""
    import torch

    from ser import threads

    model = load()
    win = int(CHUNK_S * 16000)
    workers = threads.task_workers()
    if workers > 1:
        batch = max(1, min(batch, -(-len(starts) // workers)))
    firsts = list(range(0, len(starts), batch))

    def run(i: int) -> np.ndarray:
        sel = starts[i:i + batch]
        X = np.zeros((len(sel), 1, win), np.float32)
        for j, a in enumerate(sel):
            seg = y[a:a + win]
            X[j, 0, : len(seg)] = seg
        with torch.inference_mode():
            return model(torch.from_numpy(X)).exp().numpy()

    done = (lambda k: progress(k / len(firsts))) if progress is not None else None
    for i, P in zip(firsts, threads.parallel_map(run, firsts, on_done=done)):
        yield i, starts[i:i + batch], P


class _FrameMean:
    """Average of per-model-frame values over the chunks covering each 10 ms frame (difference arrays)."""

    def __init__(self, n_out: int, sr: int = 16000):
        self.n, self.sr = n_out, sr
        self.acc = np.zeros(n_out + 1)
        self.cnt = np.zeros(n_out + 1)

    def add(self, start: int, values: np.ndarray, n_samples: int) -> int:
        """Spread one chunk's model-frame ``values`` (chunk at sample ``start``); returns the valid frames."""
        F = len(values)
        f_end = int(np.ceil(F * min(CHUNK_S * self.sr, n_samples - start) / (CHUNK_S * self.sr)))
        edges = start / self.sr + np.arange(f_end + 1) * CHUNK_S / F  # model frame k spans edges[k:k+2] s
        lo = np.clip((edges[:-1] * 100).astype(np.int64), 0, self.n - 1)
        hi = np.clip((edges[1:] * 100).astype(np.int64), 0, self.n - 1) + 1
        np.add.at(self.acc, lo, values[:f_end])
        np.add.at(self.acc, hi, -values[:f_end])
        np.add.at(self.cnt, lo, 1.0)
        np.add.at(self.cnt, hi, -1.0)
        return f_end

    def mean(self) -> np.ndarray:
        return (np.cumsum(self.acc)[: self.n] / np.maximum(np.cumsum(self.cnt)[: self.n], 1)).astype(np.float32)


@dataclass
class ChunkActivity:
    """Who talks in each model frame of each chunk (segmentation-3.0's most likely powerset class)."""

    starts: np.ndarray  # (C,) chunk starts in samples
    active: np.ndarray  # (C, F, 3) bool; frames past the recording's end are False
    sr: int = 16000

    def frame_edges(self, c: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """10-ms frame span ``[lo, hi)`` of every model frame of chunk ``c`` (clipped to ``n`` frames)."""
        F = self.active.shape[1]
        edges = self.starts[c] / self.sr + np.arange(F + 1) * CHUNK_S / F
        lo = np.clip((edges[:-1] * 100).astype(np.int64), 0, n)
        hi = np.clip((edges[1:] * 100).astype(np.int64), 0, n)
        return lo, np.maximum(hi, np.minimum(lo + 1, n))

    def frames(self, c: int, n: int, mask: np.ndarray) -> np.ndarray:
        """The 10-ms frames (of ``n``) covered by chunk ``c``'s model frames where ``mask`` is set."""
        lo, hi = self.frame_edges(c, n)
        lo, hi = lo[mask], hi[mask]
        if len(lo) == 0:
            return np.zeros(0, np.int64)
        idx = lo[:, None] + np.arange(int((hi - lo).max()))[None, :]
        return idx[idx < hi[:, None]]


def segment(y: np.ndarray, sr: int = 16000, *, step_s: float = 5.0, batch: int = 4,
            progress=None) -> tuple[np.ndarray, ChunkActivity]:
    """Expected number of active speakers per 10 ms frame, shape ``(1 + len(y) // 160,)``, and
    each chunk's local speakers' activity.

    Chunks of 10 s every ``step_s``; each chunk's frames give the expected count under the
    powerset distribution, averaged over the chunks covering a frame."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    starts = _chunk_starts(len(y), int(CHUNK_S * sr), int(step_s * sr))
    mean = _FrameMean(1 + len(y) // (sr // 100), sr)
    acts = []
    for i, sel, P in _chunk_probabilities(y, starts, batch, progress):
        expected = P @ CLASS_COUNT  # (B, F)
        hard = MAPPING[P.argmax(-1)]
        for j, a in enumerate(sel):
            f_end = mean.add(int(a), expected[j], len(y))
            hard[j, f_end:] = False
        acts.append(hard)
    active = np.concatenate(acts) if acts else np.zeros((0, 0, 3), bool)
    return mean.mean(), ChunkActivity(starts, active, sr)


@dataclass
class LocalSpeakers:
    """segmentation-3.0 over sliding chunks, and a CAM++ embedding per (chunk, local speaker)."""

    chunks: ChunkActivity  # who talks in each model frame of each chunk
    count: np.ndarray  # (n_frames,) expected number of talkers per 10 ms frame
    owner: np.ndarray  # (N, 2) (chunk, local speaker) of each embedding
    vectors: np.ndarray  # (N, 192) unit-norm embeddings
    n_frames: int


def local_speakers(y: np.ndarray, sr: int = 16000, *, step_s: float = 5.0, min_active_s: float = 0.4,
                   embed_s: float = 3.0, batch: int = 16, progress=None) -> LocalSpeakers:
    """Run segmentation-3.0 every ``step_s`` and embed each local speaker's own speech.

    A local speaker's embedding is computed from the filterbank frames where it talks alone
    (all its frames when it never does), cropped or tiled to ``embed_s`` so that every
    embedding is one fixed-size pass in a batch."""
    import torch

    from ser.diarization import campplus
    n_out = 1 + len(y) // (sr // 100)
    half = (lambda f: progress(0.5 * f)) if progress is not None else None
    count, chunks = segment(y, sr, step_s=step_s, progress=half)
    feats = campplus.fbank(y, sr)
    seqs, owner = [], []
    L = int(embed_s * 100)
    F = chunks.active.shape[1]
    for c in range(len(chunks.starts)):
        hard = chunks.active[c]
        alone = hard.sum(1) == 1
        for k in range(3):
            on = hard[:, k]
            if on.sum() * CHUNK_S / F < min_active_s:
                continue
            use = on & alone if (on & alone).sum() * CHUNK_S / F >= min_active_s else on
            fr = chunks.frames(c, len(feats), use)
            if len(fr) < 20:
                continue
            seq = feats[fr]
            seqs.append(np.resize(seq, (L, seq.shape[1])) if len(seq) < L else seq[(len(seq) - L) // 2:][:L])
            owner.append((c, k))
    vecs = np.zeros((len(seqs), campplus.EMBED_DIM), np.float32)
    net = campplus.network()
    with torch.inference_mode():
        for i in range(0, len(seqs), batch):
            X = np.stack(seqs[i:i + batch])
            X -= X.mean(1, keepdims=True)
            vecs[i:i + batch] = net(torch.from_numpy(X)).numpy()
            if progress is not None:
                progress(0.5 + 0.5 * min(1.0, (i + batch) / len(seqs)))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
    return LocalSpeakers(chunks, count, np.array(owner, np.int64).reshape(-1, 2), vecs, n_out)


def reconstruct(loc: LocalSpeakers, labels: np.ndarray, *, min_turn_s: float = 0.1,
                max_gap_s: float = 0.1) -> list[tuple[float, float, int]]:
    """Global speaker turns from local activities: each (chunk, local speaker) votes for its global
    speaker over its frames; every 10 ms frame keeps as many speakers as segmentation-3.0 counts
    there (rounded), the ones with the most votes. Returns ``(start_s, end_s, speaker)``."""
    K = int(labels.max()) + 1 if len(labels) else 0
    n = loc.n_frames
    if K == 0:
        return []
    from ser.diarization.overlap import local_votes
    names = np.full((len(loc.chunks.starts), 3), -1, np.int64)
    names[loc.owner[:, 0], loc.owner[:, 1]] = labels
    votes = local_votes(loc.chunks, names, n, K)
    want = np.rint(np.clip(loc.count, 0, 2)).astype(np.int64)
    order = np.argsort(-votes, axis=1)
    on = np.zeros((n, K), bool)
    for r in range(min(2, K)):
        take = (want > r) & (votes[np.arange(n), order[:, r]] > 0)
        on[np.flatnonzero(take), order[take, r]] = True
    out = []
    min_len, gap = int(round(min_turn_s * 100)), int(round(max_gap_s * 100))
    for g in range(K):
        x = on[:, g].astype(np.int8)
        d = np.diff(np.concatenate([[0], x, [0]]))
        s0, s1 = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        runs = []
        for a, b in zip(s0, s1):
            if runs and a - runs[-1][1] <= gap:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        out.extend((a / 100, b / 100, g) for a, b in runs if b - a >= min_len)
    return sorted(out)
