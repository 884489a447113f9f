"""Overlapped speech from segmentation-3.0's local speakers (stage 4 of the builtin diarizer).

segmentation-3.0 says, for every ~17 ms frame of each 10-s chunk, which of up to three
*local* speakers talk — including two at once — but not who they are across chunks. The
window clustering says who talks (one speaker per 10-ms frame) but cannot hear two at
once. :func:`link_local_speakers` names each chunk's local speakers by the clustering's
labels over the frames where that local speaker talks alone (two local speakers of one
chunk never take the same name); :func:`local_votes` then gives, per 10-ms frame, how
many chunks covering it hear each global speaker. Where two people talk, the second one is
the other named local speaker, not the second-closest centroid of a mixed window.
"""

from __future__ import annotations

import numpy as np


def link_local_speakers(chunks, first: np.ndarray, K: int, *, min_alone_s: float = 0.5,
                        min_share: float = 0.5) -> np.ndarray:
    """``(C, 3)`` global speaker of each chunk's local speaker (``-1``: not named).

    ``first``: the clustering's speaker per 10-ms frame (``-1`` outside speech). A local
    speaker is named after the speaker holding most of its solo frames, when it talks alone
    for at least ``min_alone_s`` and that speaker holds at least ``min_share`` of them; the
    names within one chunk are assigned jointly (most agreeing frames), so two local speakers
    of a chunk are always two people."""
    from scipy.optimize import linear_sum_assignment
    n = len(first)
    C = len(chunks.starts)
    names = np.full((C, 3), -1, np.int64)
    if K == 0 or C == 0:
        return names
    min_frames = int(round(min_alone_s * 100))
    for c in range(C):
        act = chunks.active[c]
        alone = act.sum(1) == 1
        votes = np.zeros((3, K))
        for k in range(3):
            sel = act[:, k] & alone
            if not sel.any():
                continue
            lab = first[chunks.frames(c, n, sel)]
            lab = lab[lab >= 0]
            if len(lab) >= min_frames:
                votes[k] = np.bincount(lab, minlength=K)
        talk = np.flatnonzero(votes.sum(1) > 0)
        if len(talk) == 0:
            continue
        r, g = linear_sum_assignment(-votes[talk])
        for k, gg in zip(talk[r], g):
            if votes[k, gg] >= min_share * votes[k].sum():
                names[c, k] = gg
    return names


def least_speakers(chunks, *, min_alone_s: float = 1.0) -> int:
    """A lower bound on the number of people: the most local speakers of one chunk that each talk
    alone for at least ``min_alone_s`` (segmentation-3.0 hears at most three per chunk)."""
    if chunks is None or len(chunks.starts) == 0:
        return 0
    act = chunks.active
    alone = act & (act.sum(2, keepdims=True) == 1)
    secs = alone.sum(1) * 10.0 / act.shape[1]  # (C, 3) seconds of solo speech
    return int((secs >= min_alone_s).sum(1).max())


def local_votes(chunks, names: np.ndarray, n: int, K: int) -> np.ndarray:
    """``(n, K)``: per 10-ms frame, the share of the chunks covering it that hear each named
    global speaker (``names``: ``(C, 3)``, ``-1`` for a local speaker with no name)."""
    acc = np.zeros((n + 1, K))
    cover = np.zeros(n + 1)
    for c in range(len(chunks.starts)):
        lo, hi = chunks.frame_edges(c, n)
        valid = lo < hi
        np.add.at(cover, lo[valid], 1.0)
        np.add.at(cover, hi[valid], -1.0)
        for k in range(3):
            g = names[c, k]
            if g < 0:
                continue
            on = chunks.active[c, :, k] & valid
            np.add.at(acc[:, g], lo[on], 1.0)
            np.add.at(acc[:, g], hi[on], -1.0)
    return np.cumsum(acc, axis=0)[:n] / np.maximum(np.cumsum(cover)[:n], 1)[:, None]
