"""The emotion panel of the analysis view: emotion drawn only where somebody speaks.

Each emotion window belongs to one speaker's turn. A window's *cell* is the stretch it speaks
for: from the midpoint with the previous window of the same speaker to the midpoint with the
next (windows overlap by their hop), or to its own edge where no neighbour overlaps it — so a
speaker's cells tile exactly their turns, and silence has none. Cells are put on a grid of at
most ``max_bins`` equal bins over the shown range (the overview of an hour: a bin per pixel
column or so); a bin with no cell is NaN — drawn as nothing.

Three views (``overlay``):

- ``speakers`` (default): a row per speaker, each bin coloured by its leading emotion with that
  emotion's probability as opacity — two people talking at once are two rows, not a blend;
- ``area``: the probabilities of all speakers stacked, dropping to nothing in silence (where
  two speak at once, their probabilities are averaged — the speakers view separates them);
- ``strip``: a row per emotion, the probability as shade, blank in silence (averaged likewise).
"""

from __future__ import annotations

import warnings

import numpy as np

from ser.analysis.escape import plot_text

OVERLAYS = ("speakers", "area", "strip")


def cells(windows) -> list[tuple[float, float, object]]:
    """(start, end, window) of each window's cell, per speaker, in time order."""
    out = []
    by_spk: dict[str, list] = {}
    for w in windows:
        by_spk.setdefault(w.speaker, []).append(w)
    for ws in by_spk.values():
        ws.sort(key=lambda w: (w.start_s, w.end_s))
        mids = [(w.start_s + w.end_s) / 2 for w in ws]
        for i, w in enumerate(ws):
            s, e = w.start_s, w.end_s
            if i and ws[i - 1].end_s > w.start_s:
                s = max(s, (mids[i - 1] + mids[i]) / 2)
            if i + 1 < len(ws) and ws[i + 1].start_s < w.end_s:
                e = min(e, (mids[i] + mids[i + 1]) / 2)
            if e > s:
                out.append((s, e, w))
    return out


def emotion_grid(windows, labels: list[str], lo_s: float, hi_s: float, *, max_bins: int = 600,
                 min_bin_s: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(edges [n+1], P [n, C]) over ``[lo_s, hi_s]``: each bin the mean probabilities of the cells
    that cover at least half of it (a cell shorter than a bin still marks the bin it is centred
    in); NaN rows where no cell does — silence."""
    bw = max((hi_s - lo_s) / max_bins, min_bin_s)
    n = max(1, int(np.ceil((hi_s - lo_s) / bw - 1e-9)))
    S, cnt = np.zeros((n, len(labels))), np.zeros(n)
    for s, e, w in cells(windows):
        if e <= lo_s or s >= hi_s:
            continue
        i0, i1 = int(round((s - lo_s) / bw)), int(round((e - lo_s) / bw))
        if i1 <= i0:
            i0 = int(np.clip(np.floor(((s + e) / 2 - lo_s) / bw), 0, n - 1))
            i1 = i0 + 1
        i0, i1 = max(0, i0), min(n, i1)
        if i1 > i0:
            S[i0:i1] += [w.probabilities.get(k, 0.0) for k in labels]
            cnt[i0:i1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        P = S / cnt[:, None]
    P[cnt == 0] = np.nan
    edges = np.minimum(lo_s + bw * np.arange(n + 1), hi_s)
    return edges, P


def _f32(x) -> np.ndarray:
    """float32 for plotly (sent as base64 arrays, half the bytes of float64)."""
    return np.asarray(x, dtype=np.float32)


def _runs(P: np.ndarray) -> list[tuple[int, int]]:
    """[i, j) runs of consecutive non-NaN bins with the same probabilities (one bar each)."""
    out, i, n = [], 0, len(P)
    while i < n:
        if np.isnan(P[i, 0]):
            i += 1
            continue
        j = i + 1
        while j < n and not np.isnan(P[j, 0]) and np.allclose(P[j], P[i], atol=1e-6):
            j += 1
        out.append((i, j))
        i = j
    return out


def add_emotion_panel(fig, a, lo_s: float, hi_s: float, *, overlay: str, emotion_colours: dict, row: int = 4,
                      max_bins: int = 600) -> None:
    """Draw ``a``'s emotion over ``[lo_s, hi_s]`` into ``fig``'s ``row`` (see the module)."""
    import plotly.graph_objects as go

    if overlay not in OVERLAYS:
        raise ValueError(f"overlay must be one of {', '.join(OVERLAYS)}, not {overlay!r}")
    labels = a.labels
    windows = [w for w in a.windows if w.end_s > lo_s and w.start_s < hi_s]
    speakers = a.speakers
    if overlay == "speakers":
        # one trace per (speaker, leading emotion): the hover names both once, and each bar is
        # three float32 numbers (start, length, probability) — no text per bar
        per_speaker = max(200, 3 * max_bins // max(1, len(speakers)))  # at most ~1800 bars however many speak
        in_legend: set[str] = set()
        for spk in speakers:
            edges, P = emotion_grid([w for w in windows if w.speaker == spk], labels, lo_s, hi_s,
                                    max_bins=min(max_bins, per_speaker))
            runs = _runs(P)
            lead = np.array([int(np.argmax(P[i])) for i, _ in runs], dtype=int)
            name = plot_text(spk, width=200, limit=40)
            for k in np.unique(lead):
                mine = [r for r, l_ in zip(runs, lead) if l_ == k]
                p = np.array([P[i, k] for i, _ in mine])
                fig.add_trace(go.Bar(base=_f32([edges[i] for i, _ in mine]),
                                     x=_f32([edges[j] - edges[i] for i, j in mine]), y=[spk] * len(mine),
                                     orientation="h", customdata=_f32(p),
                                     marker=dict(color=emotion_colours.get(labels[k], "#999"),
                                                 opacity=_f32(np.maximum(0.15, p)), line=dict(width=0)),
                                     name=labels[k], legendgroup=labels[k], showlegend=labels[k] not in in_legend,
                                     hovertemplate=(f"{name} · {labels[k]} %{{customdata:.0%}}<br>"
                                                    "%{base:.2f} s, %{x:.2f} s long<extra></extra>")),
                              row=row, col=1)
                in_legend.add(labels[k])
        fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(speakers)), tickmode="array",
                         range=[-0.5, len(speakers) - 0.5],  # every lane, also those silent in a zoomed range
                         tickvals=speakers, ticktext=[plot_text(x, width=200, limit=40) for x in speakers],
                         tickfont=dict(size=10), row=row, col=1)
        return
    grids = [emotion_grid([w for w in windows if w.speaker == spk], labels, lo_s, hi_s, max_bins=max_bins)
             for spk in speakers]
    if not grids:
        return
    edges = grids[0][0]
    stack = np.stack([g[1] for g in grids])  # [speakers, bins, C]
    with warnings.catch_warnings():  # "mean of empty slice": a bin where nobody speaks stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        P = np.nanmean(stack, axis=0)
    present = ~np.isnan(P[:, 0])
    centres = (edges[:-1] + edges[1:]) / 2
    if overlay == "strip":
        fig.add_trace(go.Heatmap(x=_f32(centres), y=labels, z=_f32(P.T), colorscale="Blues", zmin=0, zmax=1,
                                 showscale=False, hoverongaps=False,
                                 hovertemplate="%{y}: %{z:.0%} at %{x:.2f} s<extra></extra>"), row=row, col=1)
        fig.update_yaxes(type="category", tickmode="array", tickvals=labels, ticktext=labels, row=row, col=1)
        return
    Z = np.nan_to_num(P, nan=0.0)  # silence: every emotion 0, so the stacked area is empty there
    top = np.argsort(-Z, axis=1)[:, :3]
    hover = [("nobody speaking" if not present[i] else "<br>".join(f"{labels[k]}: {Z[i, k]:.0%}" for k in top[i]))
             + f" · {centres[i]:.1f} s" for i in range(len(centres))]
    for j, k in enumerate(labels):
        fig.add_trace(go.Scatter(x=_f32(centres), y=_f32(Z[:, j]), mode="lines", stackgroup="emo", line_shape="hv",
                                 line=dict(width=0.5, color=emotion_colours.get(k, "#999")), name=k,
                                 legendgroup="emotion", text=hover if j == 0 else None,
                                 hovertemplate=("%{text}<extra></extra>" if j == 0 else
                                                f"{k}: %{{y:.0%}}<extra></extra>")), row=row, col=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=row, col=1)
