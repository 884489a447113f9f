"""Where a diarization's missed speech is: alone or under someone else, and overlap detection.

pyannote.metrics gives DER = missed + false alarm + confusion. On meetings most of the missed
speech is *overlapped* speech given to one speaker only, which a single "missed" figure hides.
This splits it on a 10-ms grid, scored where pyannote scores (inside the UEM, outside the
collars centred on every reference boundary, overlap included):

- ``missed_single``: speech of one reference speaker where the output has nobody;
- ``missed_overlap``: speaker-time lost where two or more talk (the output has fewer speakers
  than the reference there);
- ``false_alarm``: output speaker-time beyond the reference's count;
- ``overlap_precision`` / ``overlap_recall``: of the time the output has two or more speakers,
  the share where the reference has too, and of the reference's overlapped time, the share the
  output has as overlapped. ``overlap_share``: the reference's overlapped share of speech time.

All fractions of the reference speaker-time (``total_s``), like pyannote's components, so
``missed_single + missed_overlap`` is pyannote's missed detection up to the grid.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

STEP_S = 0.01


def _count(turns: Iterable, n: int) -> np.ndarray:
    c = np.zeros(n + 1, np.int32)
    for t in turns:
        a, b = int(round(t.start_s / STEP_S)), int(round(t.end_s / STEP_S))
        a, b = max(0, min(a, n)), max(0, min(b, n))
        c[a] += 1
        c[b] -= 1
    return np.cumsum(c)[:n]


def scored_frames(ref: Sequence, n: int, uem: Sequence[tuple[float, float]] | None, collar: float) -> np.ndarray:
    """Frames pyannote scores: inside the UEM, outside ±collar/2 of every reference boundary."""
    mask = np.zeros(n, bool)
    for a, b in (uem if uem is not None else [(0.0, n * STEP_S)]):
        mask[max(0, int(round(a / STEP_S))): max(0, int(round(b / STEP_S)))] = True
    if collar > 0:
        half = collar / 2
        for t in ref:
            for x in (t.start_s, t.end_s):
                mask[max(0, int(round((x - half) / STEP_S))): max(0, int(round((x + half) / STEP_S)))] = False
    return mask


def breakdown(ref: Sequence, hyp: Sequence, *, uem: Sequence[tuple[float, float]] | None = None,
              collar: float = 0.25) -> dict:
    """The missed speech split by overlap, the false alarm and overlap detection of ``hyp``
    against ``ref`` (turns with ``start_s``, ``end_s``, ``speaker``)."""
    end = max([t.end_s for t in list(ref) + list(hyp)] + [b for _, b in (uem or [])] + [0.0])
    n = int(np.ceil(end / STEP_S)) + 1
    r, h = _count(ref, n), _count(hyp, n)
    m = scored_frames(ref, n, uem, collar)
    r, h = r[m], h[m]
    total = float(r.sum()) * STEP_S
    lost = np.maximum(r - h, 0)
    ref_ovl, hyp_ovl = r >= 2, h >= 2
    both = float(np.sum(ref_ovl & hyp_ovl))
    denom = total or 1.0
    return {"total_s": round(total, 2),
            "missed_single": float(lost[r == 1].sum()) * STEP_S / denom,
            "missed_overlap": float(lost[r >= 2].sum()) * STEP_S / denom,
            "false_alarm": float(np.maximum(h - r, 0).sum()) * STEP_S / denom,
            "overlap_share": float(ref_ovl.sum()) / max(1, int((r >= 1).sum())),
            "overlap_s": round(float(ref_ovl.sum()) * STEP_S, 2), "hyp_overlap_s": round(float(hyp_ovl.sum()) * STEP_S, 2),
            "overlap_precision": both / hyp_ovl.sum() if hyp_ovl.any() else None,
            "overlap_recall": both / ref_ovl.sum() if ref_ovl.any() else None}


def pooled(parts: Sequence[dict]) -> dict:
    """Many files' breakdowns as one (weighted by their reference time, as pyannote accumulates)."""
    tot = sum(p["total_s"] for p in parts) or 1.0
    out = {k: sum(p[k] * p["total_s"] for p in parts) / tot for k in ("missed_single", "missed_overlap", "false_alarm")}
    ovl, hyp = sum(p["overlap_s"] for p in parts), sum(p["hyp_overlap_s"] for p in parts)
    hit_r = sum((p["overlap_recall"] or 0.0) * p["overlap_s"] for p in parts)
    hit_p = sum((p["overlap_precision"] or 0.0) * p["hyp_overlap_s"] for p in parts)
    out.update(total_s=round(tot, 2), overlap_s=round(ovl, 2), hyp_overlap_s=round(hyp, 2),
               overlap_recall=hit_r / ovl if ovl else None, overlap_precision=hit_p / hyp if hyp else None)
    return out
