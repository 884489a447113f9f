"""Stages 3–4 of the builtin diarizer: cluster the windows into speakers and give every
10-ms speech frame its speaker (plus a second one where segmentation-3.0 hears overlap).
Cheap, so a new speaker count re-runs only this.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ser.analysis.result import SpeakerTurn
from ser.diarization.clustering import cluster_windows
from ser.diarization.base import Progress, BuiltinSettings, Embeddings, FRAME_S, _frame_runs, _noop, check_speaker_counts
from ser.diarization.embed import window_seconds


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
    if exact is None and s.count_evidence_s > 0 and emb.chunks is not None:
        from ser.diarization.overlap import least_speakers
        lo = max(lo, min(least_speakers(emb.chunks, min_alone_s=s.count_evidence_s), hi))
    V = emb.vectors
    rng = np.random.default_rng(0)
    idx = _clean_windows(emb, s)
    if len(idx) > s.max_cluster_points:
        idx = np.sort(rng.choice(idx, s.max_cluster_points, replace=False))
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
    first = np.full(n, -1, np.int64)
    scores = []
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
            first[ra + x:ra + y_] = c
        scores.append((ra, rb, sc))
    if s.overlap and emb.count is not None and K > 1:
        votes = None
        if s.overlap_speaker == "local" and emb.chunks is not None:
            from ser.diarization.overlap import link_local_speakers, local_votes
            names = link_local_speakers(emb.chunks, first, K, min_alone_s=s.link_min_alone_s)
            votes = local_votes(emb.chunks, names, n, K)
        for ra, rb, sc in scores:
            turns.extend(_overlap_turns(sc, first[ra:rb], emb.count[ra:rb], ra, s,
                                        None if votes is None else votes[ra:rb]))
    return _tidy(turns, emb.duration_s or None)


def _clean_windows(emb: Embeddings, s: BuiltinSettings) -> np.ndarray:
    """The windows to cluster: those where segmentation-3.0 hears one person (mean count under
    ``cluster_max_count``), unless that leaves fewer than half of them — a mixture of two voices
    is neither speaker and tends to make a speaker of its own."""
    every = np.arange(len(emb.vectors))
    if emb.count is None or not np.isfinite(s.cluster_max_count):
        return every
    c = np.concatenate([[0.0], np.cumsum(emb.count, dtype=np.float64)])
    a = np.clip(emb.windows[:, 0], 0, len(emb.count))
    b = np.clip(emb.windows[:, 1], 0, len(emb.count))
    mean = (c[b] - c[a]) / np.maximum(b - a, 1)
    keep = np.flatnonzero(mean < s.cluster_max_count)
    return keep if 2 * len(keep) >= len(every) else every


def _assign_segmented(emb: Embeddings, s: BuiltinSettings, exact: int | None, lo: int, hi: int) -> list[SpeakerTurn]:
    """Segmentation path: cluster the local speakers' embeddings, keep two local speakers of one chunk
    apart (each chunk's speakers take distinct clusters, best total similarity), then rebuild turns."""
    from scipy.optimize import linear_sum_assignment

    from ser.diarization import segmentation
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
                   s: BuiltinSettings, votes: np.ndarray | None = None) -> list[SpeakerTurn]:
    """Where segmentation-3.0 hears two people, a second speaker talks too: the other local speaker
    it hears there, named by the clustering (``votes``, :mod:`ser.diarization.overlap`), or else
    the speaker with the second-best score."""
    both = (count >= s.overlap_threshold) & (first >= 0)
    if not both.any():
        return []
    rows = np.arange(len(first))
    masked = score.copy()
    masked[rows, first] = -np.inf
    second = masked.argmax(1)
    if votes is not None:
        v = votes.copy()
        v[rows, first] = -1.0
        named = v.argmax(1)
        heard = v[rows, named] > 0
        second = np.where(heard, named, second)
    second = np.where(both, second, -1)
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
