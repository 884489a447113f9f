"""The synchronised analysis view: waveform, mel spectrogram, speaker lanes, emotion overlay.

One Plotly figure with four stacked panels sharing the time axis. Everything heavy is
reduced on the server first, so the figure's size grows neither with the recording nor with
its number of turns: the waveform is a min/max envelope over at most ``max_columns``
columns, the spectrogram is pooled to at most 1200 time columns and sent as a PNG, each speaker's
bands and lanes are one trace, the emotion overlay at most 600 points, and turn labels are
drawn only where they fit. Arrays go to the browser as base64 (Plotly ≥ 6). A range
``[t0, t1]`` redraws that stretch at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser.analysis.emotion_panel import add_emotion_panel
from ser.analysis.escape import plot_text
from ser.analysis.result import Analysis

EMOTION_COLOURS = {
    "neutral": "#9e9e9e", "calm": "#80cbc4", "happy": "#fdd835", "sad": "#5c6bc0", "angry": "#e53935",
    "fearful": "#8e24aa", "disgust": "#6d8b3a", "surprised": "#fb8c00", "positive": "#43a047",
    "negative": "#e53935", "other": "#bdbdbd",
}
SPEAKER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"]


@dataclass(frozen=True)
class SpectrogramSettings:
    n_mels: int = 80
    fmax: float = 8000.0
    dynamic_range_db: float = 70.0
    colormap: str = "Viridis"
    pitch: bool = True
    intensity: bool = False


def envelope(y: np.ndarray, sr: int, max_columns: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, minima, maxima) over at most ``max_columns`` equal blocks (no per-sample loop)."""
    n = len(y)
    cols = max(1, min(max_columns, n))
    block = -(-n // cols)
    pad = block * cols - n
    yp = np.pad(y, (0, pad), mode="edge") if pad else y
    m = yp[: block * cols].reshape(cols, block)
    t = (np.arange(cols) * block + block / 2) / sr
    return t, m.min(1), m.max(1)


def mel_db(y: np.ndarray, sr: int, s: SpectrogramSettings, max_columns: int = 1200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, mel centre frequencies, dB matrix [n_mels, T]) pooled (max) to ≤ ``max_columns`` frames.

    Computed in blocks so a long recording never holds its full-resolution spectrogram."""
    import librosa
    import torch

    hop = 160
    n_frames = 1 + len(y) // hop
    cols = min(max_columns, n_frames)
    pool = -(-n_frames // cols)
    # An overview whose columns each span many 10-ms frames samples every ``stride``-th frame (at
    # least 16 per column, each a full 25-ms window): 60 minutes cost 0.4 s instead of 5 s. A
    # zoomed range has few frames per column and keeps them all.
    stride = max(1, pool // 16)
    hop, n_frames, pool = hop * stride, 1 + len(y) // (hop * stride), -(-pool // stride)
    fmax = min(s.fmax, sr / 2)
    fb = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=512, n_mels=s.n_mels, fmax=fmax))
    window = torch.hann_window(400)
    out = np.empty((s.n_mels, -(-n_frames // pool)), dtype=np.float32)
    frames_per_block = pool * max(1, 6000 // pool)  # whole pools per block (~60 s)
    yp = np.pad(y.astype(np.float32, copy=False), 256)
    col = 0
    with torch.inference_mode():
        for f0 in range(0, n_frames, frames_per_block):
            f1 = min(n_frames, f0 + frames_per_block)
            seg = torch.from_numpy(yp[f0 * hop: (f1 - 1) * hop + 512])
            if len(seg) < 512:
                break
            spec = torch.stft(seg, 512, hop, win_length=400, window=window, center=False,
                              return_complex=True).abs().pow(2)
            mel = (fb @ spec).numpy()
            k = mel.shape[1] // pool * pool
            if k == 0:  # the last, partial pool
                pooled = mel.max(1, keepdims=True)
            else:
                pooled = mel[:, :k].reshape(s.n_mels, -1, pool).max(2)
            out[:, col: col + pooled.shape[1]] = pooled
            col += pooled.shape[1]
    out = out[:, :col]
    db = 10 * np.log10(np.maximum(out, 1e-12))
    db = np.maximum(db, db.max() - s.dynamic_range_db) if db.size else db
    times = (np.arange(col) * pool + pool / 2) * hop / sr
    freqs = librosa.mel_frequencies(n_mels=s.n_mels, fmin=0.0, fmax=fmax)
    return times, freqs, db


def pitch_track(y: np.ndarray, sr: int, max_points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz, NaN where unvoiced) with Praat's autocorrelation method (parselmouth)."""
    import parselmouth

    duration = len(y) / sr
    step = max(0.01, duration / max_points)
    p = parselmouth.Sound(y.astype(np.float64), sampling_frequency=sr).to_pitch(time_step=step, pitch_floor=75,
                                                                                  pitch_ceiling=500)
    f0 = p.selected_array["frequency"].astype(float)
    f0[f0 == 0] = np.nan
    return p.xs(), f0


def intensity_track(y: np.ndarray, sr: int, max_points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Intensity in dB (Praat)."""
    import parselmouth

    step = max(0.01, len(y) / sr / max_points)
    it = parselmouth.Sound(y.astype(np.float64), sampling_frequency=sr).to_intensity(time_step=step, minimum_pitch=75)
    return it.xs(), it.values[0]


def speaker_colours(speakers: list[str]) -> dict[str, str]:
    return {s: SPEAKER_COLOURS[i % len(SPEAKER_COLOURS)] for i, s in enumerate(speakers)}


def spectrogram_png(db: np.ndarray, spec: SpectrogramSettings) -> str:
    """A dB matrix [n_mels, T] as a PNG data URI in ``spec.colormap`` (low frequencies at the bottom)."""
    import base64
    import io

    from PIL import Image
    from plotly.colors import get_colorscale, sample_colorscale

    lut = np.array([[int(round(float(v))) for v in c[c.index("(") + 1:-1].split(",")[:3]]
                    for c in sample_colorscale(get_colorscale(spec.colormap), list(np.linspace(0, 1, 256)),
                                               colortype="rgb")], dtype=np.uint8)
    lo = db.max() - spec.dynamic_range_db if db.size else 0.0
    idx = np.clip((db - lo) / max(spec.dynamic_range_db, 1e-9) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(lut[idx[::-1]], "RGB").save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _f32(x) -> np.ndarray:
    """Numbers for the browser as float32 arrays: Plotly sends numpy arrays as compact base64."""
    return np.asarray(x, dtype=np.float32)


def merged_intervals(turns, speaker: str, min_gap: float) -> list[tuple[float, float]]:
    """A speaker's turns as intervals, those closer than ``min_gap`` (a pixel of the view) joined:
    what the overview can show of a long recording, whatever its number of turns."""
    out: list[list[float]] = []
    for t in sorted((t for t in turns if t.speaker == speaker), key=lambda t: t.start_s):
        if out and t.start_s - out[-1][1] < min_gap:
            out[-1][1] = max(out[-1][1], t.end_s)
        else:
            out.append([t.start_s, t.end_s])
    return [(a, b) for a, b in out]


def _bands(intervals, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """One filled outline for all of a speaker's intervals (rectangles joined by gaps)."""
    xs, ys = [], []
    for a, b in intervals:
        xs += [a, a, b, b, np.nan]
        ys += [lo, hi, hi, lo, np.nan]
    return _f32(xs), _f32(ys)


def decimate_windows(windows, labels: list[str], max_points: int = 600):
    """(centres, P [n, C], speakers) of the emotion windows, averaged into at most ``max_points``
    equal time bins when there are more (the overview of a long recording)."""
    windows = sorted(windows, key=lambda w: (w.start_s, w.end_s))
    centres = np.array([(w.start_s + w.end_s) / 2 for w in windows])
    P = np.array([[w.probabilities[k] for k in labels] for w in windows]).reshape(len(windows), len(labels))
    spk = [w.speaker for w in windows]
    if len(windows) <= max_points:
        return centres, P, spk
    edges = np.linspace(centres[0], centres[-1] + 1e-6, max_points + 1)
    b = np.digitize(centres, edges) - 1
    keep = np.unique(b)
    c2 = np.array([centres[b == k].mean() for k in keep])
    P2 = np.array([P[b == k].mean(0) for k in keep])
    s2 = [spk[int(np.argmax(b == k))] for k in keep]
    return c2, P2, s2


def _transcript_lane(fig, a: Analysis, lo_s: float, hi_s: float, width_px: int, colours: dict) -> None:
    """What was said, on the speaker lanes: one invisible bar per utterance (at most 3000 in the
    range) whose hover shows its text, speaker, times and emotion."""
    import plotly.graph_objects as go

    utts = [u for u in a.utterances if u.end_s > lo_s and u.start_s < hi_s][:3000]
    if not utts:
        return
    lane = [u.speaker if u.speaker in colours else (a.speakers[0] if a.speakers else "?") for u in utts]
    hover = [f"{plot_text(u.speaker or '?', limit=40)} {u.start_s:.2f}–{u.end_s:.2f} s"
             + (f" · {u.emotion}{'?' if u.uncertain else ''}" if u.emotion else "") + "<br>" + plot_text(u.text)
             for u in utts]
    fig.add_trace(go.Bar(base=_f32([u.start_s for u in utts]), x=_f32([u.end_s - u.start_s for u in utts]), y=lane,
                         orientation="h", marker=dict(color="rgba(0,0,0,0)", line=dict(width=0)), name="transcript",
                         hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", showlegend=False),
                  row=3, col=1)


def _transcript_notes(fig, a: Analysis, lo_s: float, hi_s: float, width_px: int, char_px: float = 6.5) -> list[dict]:
    """The words themselves on the speaker lanes where they fit (zoomed in): each utterance's
    text, cut to the pixels its span has, at most 200."""
    if not a.utterances:
        return []
    lanes = fig.get_subplot(3, 1)
    xref, yref = lanes.xaxis.plotly_name.replace("axis", ""), lanes.yaxis.plotly_name.replace("axis", "")
    px_per_s = width_px / max(1e-6, hi_s - lo_s)
    notes = []
    for u in a.utterances:
        if u.end_s <= lo_s or u.start_s >= hi_s or u.speaker is None:
            continue
        span = min(u.end_s, hi_s) - max(u.start_s, lo_s)
        chars = int(span * px_per_s / char_px)
        if chars < 8:
            continue
        t = " ".join(u.text.split())
        t = t if len(t) <= chars else t[: chars - 1] + "…"
        notes.append(dict(x=max(u.start_s, lo_s), y=u.speaker, xref=xref, yref=yref, xanchor="left", bgcolor="rgba(255,255,255,0.75)", showarrow=False,
                          text=plot_text(t, width=10_000), font=dict(size=10, color="#111")))
    return notes[:200]


def analysis_figure(y: np.ndarray, sr: int, a: Analysis, *, spec: SpectrogramSettings = SpectrogramSettings(),
                    max_columns: int = 2000, overlay: str = "speakers", height: int | None = None,
                    t0: float | None = None, t1: float | None = None, label_px: int = 70, width_px: int = 1100):
    """The four-panel view of ``a`` over ``[t0, t1]`` (default: the whole recording).

    The payload does not grow with the number of turns: the audio is reduced to at most
    ``max_columns`` columns of the shown range, each speaker's bands are one trace, the emotion
    curves at most 600 points (window averages), and turn labels are drawn only where they fit
    (``label_px`` of a ``width_px``-wide plot) — zooming in (a narrower ``[t0, t1]``) shows every
    window and label of that range at full resolution. ``overlay``: "speakers" (a row per speaker,
    coloured by the leading emotion), "area" or "strip" (ser.analysis.emotion_panel); emotion
    is drawn only where somebody speaks. ``height`` grows with the number of speakers (every
    lane keeps its label) unless given."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lo_s = max(0.0, float(t0 or 0.0))
    hi_s = min(float(a.duration_s), float(t1) if t1 is not None else float(a.duration_s))
    if hi_s <= lo_s:
        lo_s, hi_s = 0.0, float(a.duration_s)
    y = y[int(lo_s * sr): int(np.ceil(hi_s * sr))]
    turns = [t for t in a.turns if t.end_s > lo_s and t.start_s < hi_s]
    speakers = a.speakers
    n_spk = max(1, len(speakers))  # rows of ~20 px per speaker, so every lane keeps its label
    px = [164, 279, max(110, 20 * n_spk), max(200, 24 * n_spk) if overlay == "speakers" else 246]
    height = height or int(sum(px) / 0.91) + 80
    emotion_title = {"speakers": "Emotion per speaker (colour: leading emotion; the stronger, the surer)",
                     "area": "Emotion (all speakers; empty where nobody speaks)",
                     "strip": "Emotion (all speakers; blank where nobody speaks)"}.get(overlay, "Emotion")
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        specs=[[{}], [{"secondary_y": True}], [{}], [{}]],
                        row_heights=[p / sum(px) for p in px],
                        subplot_titles=("Waveform", "Mel spectrogram", "Speakers", emotion_title))
    colours = speaker_colours(speakers)
    pixel = (hi_s - lo_s) / width_px
    lanes = {spk: merged_intervals(turns, spk, pixel) for spk in speakers}
    # 1. waveform envelope with speaker bands (one trace per speaker)
    t, lo, hi = envelope(y, sr, max_columns) if len(y) else (np.zeros(1), np.zeros(1), np.zeros(1))
    peak = float(max(np.abs(lo).max(), np.abs(hi).max(), 1e-3))
    for spk in speakers:
        bx, by = _bands(lanes[spk], -peak, peak)
        if len(bx):
            fig.add_trace(go.Scatter(x=bx, y=by, fill="toself", mode="none", fillcolor=colours[spk], opacity=0.15,
                                     hoverinfo="skip", name=f"{spk} band", showlegend=False), row=1, col=1)
    fig.add_trace(go.Scatter(x=_f32(np.concatenate([t, t[::-1]]) + lo_s), y=_f32(np.concatenate([hi, lo[::-1]])),
                             fill="toself", mode="lines", line=dict(width=0.5, color="#37474f"),
                             fillcolor="rgba(55,71,79,0.6)", hoverinfo="skip", name="waveform", showlegend=False),
                  row=1, col=1)
    if not len(y):  # History without kept audio: the stored analysis's speakers and emotion only
        for r in (1, 2):
            fig.add_annotation(text="audio not kept: no waveform or spectrogram", showarrow=False, font=dict(size=12),
                               xref=f"x{'' if r == 1 else r} domain", yref=f"y{'' if r == 1 else r} domain",
                               x=0.5, y=0.5)
    # 2. mel spectrogram as one PNG image (drawn by the browser at no cost, unlike a heatmap of
    #    ~100k cells), y in mel bands labelled in Hz; pitch / intensity over it
    if len(y) >= 512:
        st_, freqs, db = mel_db(y, sr, spec, max_columns=min(max_columns, 1200))
        dt = float(st_[1] - st_[0]) if len(st_) > 1 else (hi_s - lo_s)
        fig.add_layout_image(dict(source=spectrogram_png(db, spec), xref="x2", yref="y2", x=lo_s + float(st_[0]) - dt / 2,
                                  y=len(freqs) - 0.5, sizex=dt * len(st_), sizey=len(freqs), sizing="stretch",
                                  layer="below", xanchor="left", yanchor="top"))
        ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000) if freqs[0] <= f <= freqs[-1]]
        fig.update_yaxes(range=[-0.5, len(freqs) - 0.5], tickvals=[float(np.interp(f, freqs, np.arange(len(freqs))))
                                                                    for f in ticks],
                         ticktext=[f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks], showgrid=False,
                         row=2, col=1, secondary_y=False)
        if spec.pitch:
            pt, f0 = pitch_track(y, sr)
            fig.add_trace(go.Scatter(x=_f32(pt + lo_s), y=_f32(np.round(f0, 1)), mode="lines",
                                     line=dict(color="#ffffff", width=1.5), name="F0 (Hz)", connectgaps=False,
                                     hovertemplate="F0 %{y:.0f} Hz at %{x:.2f} s<extra></extra>"), row=2, col=1,
                          secondary_y=True)
            fig.update_yaxes(title_text="F0 (Hz)", range=[50, 500], tickmode="array", tickvals=[100, 200, 300, 400],
                             showgrid=False, row=2, col=1, secondary_y=True)
        if spec.intensity:
            it, db_i = intensity_track(y, sr)
            scaled = (db_i - np.nanmin(db_i)) / max(1e-9, np.nanmax(db_i) - np.nanmin(db_i)) * (len(freqs) - 1)
            fig.add_trace(go.Scatter(x=_f32(it + lo_s), y=_f32(scaled), mode="lines", customdata=_f32(db_i),
                                     line=dict(color="#ffeb3b", width=1), name="intensity",
                                     hovertemplate="%{customdata:.0f} dB at %{x:.2f} s<extra></extra>"), row=2, col=1)
    # 3. speaker lanes: one bar trace per speaker (turns closer than a pixel drawn as one bar)
    for spk in speakers:
        mine = lanes[spk]
        fig.add_trace(go.Bar(base=_f32([a_ for a_, _ in mine]), x=_f32([b_ - a_ for a_, b_ in mine]),
                             y=[spk] * len(mine), orientation="h", marker_color=colours[spk], name=spk,
                             hovertemplate=f"{plot_text(spk, width=200, limit=40)}<br>%{{base:.2f}} s, "
                                           "%{x:.2f} s long<extra></extra>"),
                      row=3, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(speakers)), tickmode="array",
                     range=[-0.5, len(speakers) - 0.5],  # every lane, also those silent in a zoomed range
                     tickvals=speakers, ticktext=[plot_text(x, width=200, limit=40) for x in speakers],
                     tickfont=dict(size=10), row=3, col=1)
    _transcript_lane(fig, a, lo_s, hi_s, width_px, colours)
    # 4. emotion, only where somebody speaks (ser.analysis.emotion_panel); the dominant emotion of
    #    each turn written above it where its label fits
    add_emotion_panel(fig, a, lo_s, hi_s, overlay=overlay, emotion_colours=EMOTION_COLOURS)
    emo = fig.get_subplot(4, 1)
    ex, ey = emo.xaxis.plotly_name.replace("axis", ""), emo.yaxis.plotly_name.replace("axis", "")
    min_len = (hi_s - lo_s) * label_px / width_px  # a label needs about label_px pixels
    notes = [dict(x=(max(seg.start_s, lo_s) + min(seg.end_s, hi_s)) / 2, y=1.02, xref=ex, yref=f"{ey} domain",
                  showarrow=False, text=f"{seg.emotion}?" if seg.uncertain else seg.emotion,
                  font=dict(size=10, color=colours.get(seg.speaker, "#333")))
             for seg in a.segments if seg.end_s > lo_s and seg.start_s < hi_s
             and min(seg.end_s, hi_s) - max(seg.start_s, lo_s) >= min_len]
    fig.update_layout(annotations=list(fig.layout.annotations) + notes[:200] + _transcript_notes(fig, a, lo_s, hi_s, width_px))
    fig.update_yaxes(title_text="Hz", row=2, col=1, secondary_y=False)
    fig.update_yaxes(range=[-peak, peak], showticklabels=False, row=1, col=1)
    fig.update_xaxes(range=[lo_s, hi_s])
    fig.update_xaxes(title_text="time (s)", row=4, col=1)
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=40, b=40), barmode="overlay",
                      hovermode="closest", legend=dict(orientation="h", y=-0.08),
                      uirevision=f"analysis-{lo_s:.3f}-{hi_s:.3f}", dragmode="select")
    return fig


def speaker_mix_chart(a: Analysis):
    """Each speaker's emotion mix (talk-time-weighted mean probabilities) as stacked horizontal
    bars (Plotly, like the main view: no second charting library for the page to load)."""
    import plotly.graph_objects as go

    summary = a.speaker_summary()
    speakers = list(summary)
    fig = go.Figure()
    for k in a.labels:
        fig.add_trace(go.Bar(y=speakers, x=[summary[s]["mean_probabilities"][k] for s in speakers], orientation="h",
                             name=k, marker_color=EMOTION_COLOURS.get(k, "#90a4ae"),
                             customdata=[round(summary[s]["talk_time_s"], 1) for s in speakers],
                             text=[plot_text(s, width=200, limit=40) for s in speakers], textposition="none",
                             hovertemplate=f"%{{text}}: {k} %{{x:.0%}} of %{{customdata}} s<extra></extra>"))
    fig.update_yaxes(tickmode="array", tickvals=speakers, ticktext=[plot_text(s, width=200, limit=40) for s in speakers])
    return fig.update_layout(barmode="stack", height=60 + 45 * max(1, len(speakers)), xaxis=dict(tickformat=".0%",
                             range=[0, 1], title="emotion mix (talk-time weighted)"),
                             margin=dict(l=60, r=20, t=10, b=40), legend=dict(orientation="h", y=-0.5))


def figure_payload_bytes(fig) -> int:
    """Size of the figure's JSON as sent to the browser."""
    return len(fig.to_json().encode())


# --- small charts for the Live page (Vega-Lite through Altair: light enough to redraw twice a second)
NO_SPEECH = "no speech"
NO_SPEECH_COLOUR = "#eceff1"


def probability_bars(probs: dict[str, float]):
    """Horizontal probability bars, most probable first, coloured per emotion (an Altair chart)."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame({"emotion": list(probs), "probability": [float(v) for v in probs.values()]})
    colours = alt.Scale(domain=list(probs), range=[EMOTION_COLOURS.get(k, "#90a4ae") for k in probs])
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("emotion:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False, labelFontSize=15)),
        color=alt.Color("emotion:N", scale=colours, legend=None),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
    ).properties(height=34 * len(df))


def live_timeline(updates, labels: list[str], *, span_s: float = 30.0):
    """Stacked emotion probabilities of the last ``span_s`` seconds of live updates, one column
    per window end; windows without speech are a grey "no speech" band (an Altair chart)."""
    import altair as alt
    import pandas as pd

    rows = []
    end = updates[-1].end_s if updates else span_s
    for u in updates:
        if u.end_s < end - span_s:
            continue
        if u.no_speech:
            rows += [{"t": u.end_s, "emotion": k, "p": 0.0} for k in labels]
            rows.append({"t": u.end_s, "emotion": NO_SPEECH, "p": 1.0})
        else:
            rows += [{"t": u.end_s, "emotion": k, "p": float(u.probabilities[k])} for k in labels]
            rows.append({"t": u.end_s, "emotion": NO_SPEECH, "p": 0.0})
    df = pd.DataFrame(rows, columns=["t", "emotion", "p"])
    domain = [*labels, NO_SPEECH]
    colours = alt.Scale(domain=domain, range=[EMOTION_COLOURS.get(k, "#90a4ae") for k in labels] + [NO_SPEECH_COLOUR])
    return alt.Chart(df).mark_area(interpolate="step-before").encode(
        x=alt.X("t:Q", title="time (s)", scale=alt.Scale(domain=[max(0.0, end - span_s), max(end, span_s)])),
        y=alt.Y("p:Q", stack="normalize", title="probability", axis=alt.Axis(format="%")),
        color=alt.Color("emotion:N", scale=colours, legend=alt.Legend(orient="bottom", columns=9, title=None)),
        order=alt.Order("emotion:N"),
        tooltip=[alt.Tooltip("t:Q", title="window end (s)"), "emotion", alt.Tooltip("p:Q", format=".0%")],
    ).properties(height=220)


def trust_figure(rows: list[dict]):
    """Per-corpus UAR bars (speakers never seen / corpus never seen) with each chance level
    as a dashed tick and human raters as a dotted one (a Plotly figure), from ``ser.training.report.trust_table``."""
    import plotly.graph_objects as go

    names = [r["corpus"] + ("" if r["in_training"] else " (never trained on)") for r in rows]
    fig = go.Figure()
    for key, label, colour in (("cv_uar", "speakers never seen (CV)", "#1e88e5"),
                               ("loco_uar", "corpus never seen (LOCO)", "#fb8c00")):
        fig.add_bar(x=names, y=[r[key] for r in rows], name=label, marker_color=colour,
                    text=[None if r[key] is None else f"{r[key]:.2f}" for r in rows], textposition="outside")
    for i, r in enumerate(rows):
        for key, dash, what in (("cv_chance", "dash", "chance"), ("loco_chance", "dash", "chance"),
                                ("human_uar", "dot", "human raters")):
            if r.get(key) is not None:
                fig.add_shape(type="line", x0=i - 0.45, x1=i + 0.45, y0=r[key], y1=r[key], xref="x", yref="y",
                              line=dict(color="#424242" if what == "chance" else "#2e7d32", dash=dash, width=1.5))
        if r.get("human_uar") is not None:
            fig.add_annotation(x=i, y=r["human_uar"], text="human raters", showarrow=False, yshift=8,
                               font=dict(size=11, color="#2e7d32"))
    fig.update_layout(barmode="group", height=320, margin=dict(l=40, r=10, t=30, b=40),
                      yaxis=dict(title="UAR", range=[0, 1]), legend=dict(orientation="h", y=-0.18, x=0),
                      title=dict(text="dashed: chance for that corpus's classes", font=dict(size=12)))
    return fig
