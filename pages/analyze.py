"""Analyze a recording: who spoke when, feeling what, in one synchronised view."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import streamlit as st

from pages import chosen_model, current_user, plain, through_app

from ser.audio.decode import SUPPORTED_FORMATS, load_audio
from ser.errors import SERError

through_app()  # not past app.py's sign-in gate (a first visitor's deep link)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo_dialogue.wav"
EMOTION_DEMO = ROOT / "assets" / "demo_emotions.flac"
LABEL_SETS = {"8 emotions (RAVDESS)": "ravdess8", "7 basic emotions": "basic7", "4 emotions": "four",
              "valence: positive / neutral / negative": "valence3", "valence: positive / negative": "valence2"}
EXT = {"json": "application/json", "csv": "text/csv", "rttm": "text/plain", "textgrid": "text/plain",
       "eaf": "application/xml", "audacity": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}
TRANSCRIPT_OPTIONS = ["for recordings up to 10 minutes", "always", "off"]
TRANSCRIPT_AUTO_MAX_S = 600.0
LANGUAGES = {"detect": None, "English": "en", "German": "de", "French": "fr", "Spanish": "es", "Italian": "it",
             "Dutch": "nl", "Portuguese": "pt", "Amharic": "am", "Chinese": "zh", "Japanese": "ja"}


@st.cache_resource(max_entries=32, show_spinner=False)
def _user_stage_cache(user: str):
    from ser.analysis.pipeline import StageCache

    return StageCache(max_items=8)


def stage_cache(source: str):
    """The server's stage cache for the bundled demos and a single-user dashboard; with sign-in,
    each user's own for what they upload or record — whether somebody else analysed the same
    recording on this server is nobody's business ("already analysed" must mean by you)."""
    from ser.analysis.pipeline import DEFAULT_CACHE

    user = current_user()
    return DEFAULT_CACHE if user is None or source.endswith("demo") else _user_stage_cache(user)


@st.cache_resource(max_entries=4, show_spinner=False)
def decode(digest: str, name: str, _data: bytes):
    """Decoded once per upload (keyed by the bytes' hash); shared, never copied."""
    return load_audio(_data, name=name)


@st.cache_data(max_entries=32, show_spinner=False)
def span_wav(digest: str, name: str, _data: bytes, start_s: float, end_s: float) -> bytes:
    """Exactly ``start_s``–``end_s`` of the analysed signal (16 kHz mono) as a WAV (ser.audio.clip)."""
    from ser.audio.clip import cut_wav

    a = decode(digest, name, _data)
    return cut_wav(a.y, a.sr, start_s, end_s)


@st.cache_resource(show_spinner=False)
def empty_frame():
    """The four panels' titles and axes, no data: a placeholder of a few hundred bytes."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.2, 0.34, 0.16, 0.3],
                        subplot_titles=("Waveform", "Mel spectrogram", "Speakers", "Emotion"))
    return fig.update_layout(height=820, margin=dict(l=60, r=20, t=40, b=40))


@st.cache_resource(show_spinner=False)
def get_pyannote(source: str, token: str, device: str):
    from ser.diarization.backends import PyannoteDiarizer

    return PyannoteDiarizer(source or None, token=token or None, device=device)


def max_upload_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


st.title("Analyze a recording")
st.caption("Who spoke when, and how they sounded: waveform, spectrogram, speaker lanes and emotion "
           "probabilities over one time axis.")

ADAPT_OPTIONS = {"off": "none", "recording": "recording", "per speaker": "speaker"}

# --- source --------------------------------------------------------------------------
SOURCES = ["Emotion demo", "Dialogue demo", "Upload", "Record"]
src_kind = st.radio("Audio", SOURCES, horizontal=True, key="analyze_source",
                    help="The demos are analysed as soon as the page opens. Choose Upload or Record to analyse "
                         "your own audio.")
data, name = None, None
if src_kind == "Upload":
    up = st.file_uploader(f"Upload a recording (up to {max_upload_mb()} MB; {', '.join(SUPPORTED_FORMATS)})",
                          type=list(SUPPORTED_FORMATS), key="analyze_upload")
    if up is not None:
        data, name = up.getvalue(), up.name
elif src_kind == "Record":
    rec = st.audio_input("Record", sample_rate=16_000, key="analyze_record")
    if rec is not None:
        data, name = rec.getvalue(), "recording.wav"
else:
    demo = EMOTION_DEMO if src_kind == "Emotion demo" else DEMO
    if demo.is_file():
        data, name = demo.read_bytes(), demo.name
        if demo == EMOTION_DEMO:
            st.info("**Demo: three RAVDESS actors taking turns through six acted emotions.** These voices are in the "
                    "bundled model's training data, so this shows the instrument, not how well it generalises: a "
                    "fair test is your own recording (choose **Upload** or **Record** above). The intended emotion "
                    "of each turn is shown beside the model's in the table. Audio: RAVDESS, Livingstone & Russo "
                    "(2018), CC BY-NC-SA 4.0.", icon=":material/theater_comedy:")
        else:
            st.caption("A two-voice dialogue the project synthesised with espeak-ng (scripts/make_demo.py). "
                       "Synthetic speech is not acted emotion: read its probabilities as a demo of the view. "
                       "Its two synthetic voices sound alike to the speaker-embedding network (trained on real "
                       "voices), so this demo is diarized with its known count of two speakers unless you set "
                       "one under Settings → Speakers.")
    else:
        st.warning(f"The demo recording {demo.name} is missing; run the script named in assets/README.md.")

# --- controls ------------------------------------------------------------------------
with st.expander("Settings", expanded=False):
    c1, c2, c3 = st.columns(3)
    with c1:
        backend = st.selectbox("Diarizer", ["builtin (offline)", "pyannote"], key="analyze_backend")
        pa_source = pa_token = ""
        if backend == "pyannote":
            pa_source = st.text_input("Pipeline folder or Hugging Face id", key="analyze_pa_source",
                                      placeholder="~/models/speaker-diarization-community-1")
            pa_token = st.text_input("Hugging Face token (only for a hub id)", type="password", key="analyze_pa_token")
        mode = st.radio("Speakers", ["auto", "exact", "min–max"], horizontal=True, key="analyze_mode")
        counts: dict = {}
        if mode == "exact":
            counts["num_speakers"] = int(st.number_input("Number of speakers", 1, 20, 2, key="analyze_n"))
        elif mode == "min–max":
            lo, hi = st.slider("Between", 1, 20, (2, 4), key="analyze_range")
            counts = {"min_speakers": int(lo), "max_speakers": int(hi)}
        if src_kind == "Dialogue demo" and not counts:
            counts = {"num_speakers": 2}  # the script's two voices (see the caption above the chart)
    with c2:
        label_set = LABEL_SETS[st.selectbox("Label set", list(LABEL_SETS), key="analyze_labels")]
        window_s = st.slider("Emotion window (s)", 1.0, 6.0, 2.0, 0.5, key="analyze_window")
        hop_s = st.slider("Window hop (s)", 0.25, window_s, min(1.0, window_s), 0.25, key="analyze_hop")
        overlay = st.radio("Emotion view", ["speakers", "area", "strip"], horizontal=True, key="analyze_overlay",
                           format_func={"speakers": "per speaker", "area": "stacked", "strip": "strip"}.get,
                           help="Emotion is drawn only where somebody speaks. Per speaker: a row each, coloured "
                                "by the leading emotion, the stronger the surer (two people at once stay two). "
                                "Stacked and strip: every emotion's probability, speakers averaged.")
        adapt = ADAPT_OPTIONS[st.radio(
            "Adapt to this recording", list(ADAPT_OPTIONS), horizontal=True, key="analyze_adapt",
            help="Uses the recording's own statistics (no labels): the emotion features of all its windows, or of "
                 "each speaker's, are centred on themselves, which removes much of what a new microphone, room or "
                 "voice shifts. A group that seems to hold one emotion, or has too few windows, is left as it is, "
                 "and the line under the chart says so. On acted corpora the model never saw (every speaker "
                 "showing every emotion) per-speaker adaptation raised UAR from 0.57 to 0.64; in conversations, "
                 "where a speaker shows one or two emotions, it lost accuracy — so it is off by default "
                 "(docs/evaluation.md).")]
    with c3:
        n_mels = st.select_slider("Mel bands", [40, 64, 80, 128], 80, key="analyze_mels")
        fmax = st.select_slider("Maximum frequency (Hz)", [4000, 5000, 6000, 8000], 8000, key="analyze_fmax")
        dyn = st.slider("Dynamic range (dB)", 30, 100, 70, 5, key="analyze_dyn")
        cmap = st.selectbox("Colour map", ["Viridis", "Magma", "Greys", "Cividis", "Inferno"], key="analyze_cmap")
        show_pitch = st.checkbox("Pitch (F0)", True, key="analyze_pitch")
        show_int = st.checkbox("Intensity", False, key="analyze_intensity")
    t1, t2 = st.columns(2)
    transcript_mode = t1.selectbox(
        "Transcript", TRANSCRIPT_OPTIONS, key="analyze_transcript",
        help="Words beside speakers and emotion (Whisper-base, offline). It adds about a third of the analysis time "
             "on a 2-core machine; above 10 minutes it is off unless you choose “always”.")
    language = LANGUAGES[t2.selectbox("Language of the speech", list(LANGUAGES), key="analyze_language",
                                      help="“detect” lets the model guess from the first 30 s of speech.")]
    try:
        from ser.serve.voices import VoiceLibrary

        known = VoiceLibrary().voices(current_user())
    except SERError as exc:
        st.warning("The voice library cannot be read: " + plain(exc))
        known = []
    use_voices = bool(known) and not st.checkbox(
        f"Keep every speaker anonymous (else speakers whose voice is one of the {len(known)} in your library are "
        "named; the Known voices page lists them)", False, key="analyze_anonymous",
        help="Each speaker's voice is compared with the voices you enrolled; a clear match takes the name, a "
             "doubtful one is shown as “may be …” and not named.")
    h1, h2 = st.columns(2)
    save_history = h1.checkbox("Save analyses to History", True, key="analyze_save")
    keep_audio = h2.checkbox("…with their audio (kept only if you tick this)", False, key="analyze_keep_audio")

if data is None:
    st.info("Upload a recording or record one (or choose a demo).")
    st.stop()

# --- analysis ------------------------------------------------------------------------
digest = hashlib.sha256(data).hexdigest()
status = st.status("Analysing…", expanded=False)
# The chart's place, drawn at once as an empty frame: the browser loads the plotting library
# while the model loads and the analysis runs, and the view replaces the frame when it is ready.
chart_slot = st.empty()
chart_slot.plotly_chart(empty_frame(), config={"displaylogo": False, "staticPlot": True})
try:
    model = chosen_model()
    if backend == "pyannote":
        diarizer = get_pyannote(pa_source, pa_token, st.session_state.get("device", "auto"))
    else:
        diarizer = "builtin"
    with status:
        bar = st.progress(0.0)

        shown = {"stage": None, "t": 0.0}

        def progress(stage: str, frac: float) -> None:
            """At most ~4 updates a second (an hour has thousands of turns: one message each would
            keep the browser and the server busy redrawing the bar)."""
            now = time.monotonic()
            if stage == shown["stage"] and now - shown["t"] < 0.25 and frac < 1.0:
                return
            if stage != shown["stage"]:
                status.update(label=f"Analysing: {stage}…")
            shown.update(stage=stage, t=now)
            bar.progress(min(1.0, max(0.0, frac)), text=stage)

        audio = decode(digest, name, data)
        from ser.analysis.pipeline import analyze, relabel
        from ser.transcription.asr import available as asr_available, missing_message

        transcribe = transcript_mode == "always" or (transcript_mode != "off"
                                                     and audio.duration_s <= TRANSCRIPT_AUTO_MAX_S)
        if transcribe and not asr_available():
            st.warning(missing_message())
            transcribe = False
        analysis = analyze(audio, diarizer=diarizer, model=model, window_s=window_s, hop_s=hop_s, progress=progress,
                           name=name, adapt=adapt, transcribe=transcribe, language=language,
                           voices=known if use_voices else None, cache=stage_cache(src_kind), **counts)
        if label_set != model.card.label_set:
            analysis = relabel(analysis, label_set)
        t = analysis.provenance["timings_s"]
        reused = analysis.provenance.get("reused_stages", [])
        if {"turns", "emotion"} <= set(reused):  # nothing computed: say so rather than "in 0.0 s"
            label = (f"Analysed {analysis.duration_s:.1f} s: already analysed on this server with these settings, "
                     "shown from its cache")
        else:
            label = (f"Analysed {analysis.duration_s:.1f} s in {t['total_s']:.1f} s "
                     f"(diarization {t['diarization_s']:.1f} s, emotion {t['emotion_s']:.1f} s"
                     + (f", transcript {t['transcript_s']:.1f} s" if "transcript_s" in t else "") + ")"
                     + (f"; reused from this server's cache: {', '.join(reused)}" if reused else ""))
        status.update(label=label, state="complete")
except SERError as exc:
    chart_slot.empty()
    status.update(label="Not analysed", state="error")
    st.error(plain(exc))
    st.stop()

if save_history and src_kind != "Emotion demo":  # the first screen is not saved on every visit
    from ser.serve.history import History

    settings = {"model": model.id, "diarizer": analysis.provenance["diarizer"], "counts": counts,
                "window_s": window_s, "hop_s": hop_s, "label_set": label_set, "adapt": adapt,
                "transcript": {"language": language} if transcribe else None,
                "voices": (analysis.provenance.get("voices") or {}).get("fingerprint")}
    try:
        hist = History()
        if hist.find(analysis.provenance["audio"]["sha256"], settings, owner=current_user()) is None:
            hist.save(analysis, settings, audio=data if keep_audio else None, audio_name=name if keep_audio else None,
                      owner=current_user())
    except SERError as exc:
        st.warning("Not saved to History: " + plain(exc))

ad = analysis.provenance.get("adaptation", {})
if ad.get("mode", "none") != "none":  # one line: what was adapted, and what was not and why
    groups = ad.get("per_group", {})
    used = [g for g, r in groups.items() if r.get("used") == "adapted"]
    fell = {g: r.get("reason", "") for g, r in groups.items() if r.get("used") != "adapted"}
    unit = "speaker" if ad["mode"] == "speaker" else "recording"
    st.caption(f"Adapted to this recording ({'per speaker' if unit == 'speaker' else 'as a whole'}): "
               f"{len(used)} of {len(groups)} "
               f"{unit}{'s' if len(groups) != 1 else ''}, {ad.get('adapted_share', 0):.0%} of the emotion windows"
               + "".join(f"; {plain(g)} not adapted: {plain(why)}" for g, why in fell.items()))

ident = analysis.provenance.get("voices")
if ident:
    said = []
    for m in ident["speakers"]:
        if m["status"] == "named":
            said.append(f"{m['speaker']} is {m['voice']} (similarity {m['score']:.2f})")
        elif m["status"] == "merged":
            said.append(f"{m['speaker']} is also {m['voice']} ({m['score']:.2f}; joined)")
        elif m["status"] == "uncertain":
            said.append(f"{m['speaker']} may be {m['voice']} ({m['score']:.2f}: too unsure to name)")
    st.caption(plain("Known voices: " + ("; ".join(said) if said else "none of the "
                                         f"{ident['library']} voice(s) in your library recognised") + "."))

if analysis.provenance.get("no_speech"):
    st.warning("No speech found in this recording (voice activity detection heard only silence or noise).")

# --- the view --------------------------------------------------------------------------
from ser.analysis.figures import SpectrogramSettings, analysis_figure  # noqa: E402

spec = SpectrogramSettings(n_mels=n_mels, fmax=float(fmax), dynamic_range_db=float(dyn), colormap=cmap,
                           pitch=show_pitch, intensity=show_int)
# Everything below reruns on each click (a row to play, a point on the chart); the figure and the
# export files are computed once per analysis and display settings.
VIEW_KEY = json.dumps([analysis.provenance["audio"]["sha256"], analysis.provenance["model"]["id"],
                       analysis.provenance["diarizer"], counts, window_s, hop_s, label_set, adapt,
                       analysis.provenance.get("transcript", {}).get("language_given"), language, transcribe,
                       (analysis.provenance.get("voices") or {}).get("fingerprint")],
                      sort_keys=True, default=str)


@st.cache_data(max_entries=8, show_spinner="Drawing…")
def build_figure(view_key: str, spec: SpectrogramSettings, overlay: str, t0: float, t1: float, _audio, _analysis):
    return analysis_figure(_audio.y, _audio.sr, _analysis, spec=spec, overlay=overlay, t0=t0, t1=t1)


@st.cache_data(max_entries=4, show_spinner=False)
def range_downloads(view_key: str, stem: str, t0: float, t1: float, _audio, _analysis) -> dict:
    """The selected range as a WAV clip and the analysis of that range (times from its start)."""
    from ser.analysis.exports import export_bytes
    from ser.audio.clip import cut_wav

    name = f"{stem}_{t0:.1f}-{t1:.1f}s"
    out = {"wav": (f"{name}.wav", cut_wav(_audio.y, _audio.sr, t0, t1))}
    out.update(export_bytes(_analysis.crop(t0, t1), ["csv", "textgrid", "json"], stem=name))
    return out


@st.cache_data(max_entries=4, show_spinner=False)
def downloads(view_key: str, stem: str, _analysis, media: str | None = None) -> dict:
    from ser.analysis.exports import export_bytes

    return export_bytes(_analysis, stem=stem, media=media)  # the EAF links the recording beside it


# The time range: the whole recording, or a stretch chosen by dragging a box on the chart (or with
# the slider below it). The chart then redraws that stretch at full resolution; Play and the
# range downloads use it too.
duration = float(analysis.duration_s)
RANGE_KEY = "analyze_range"
if st.session_state.get("analyze_range_for") != VIEW_KEY or RANGE_KEY not in st.session_state:
    st.session_state[RANGE_KEY] = (0.0, round(duration, 1))  # a new analysis shows all of it
    st.session_state["analyze_range_for"] = VIEW_KEY
    st.session_state.pop("analyze_box_used", None)
try:  # the chart's last selection (a box dragged on it), from the previous run
    boxes = list(st.session_state["analyze_chart"]["selection"]["box"])
except (KeyError, TypeError):
    boxes = []
if boxes:
    x0, x1 = sorted(float(v) for v in boxes[-1]["x"][:2])
    mark = json.dumps([round(x0, 2), round(x1, 2)])
    if st.session_state.get("analyze_box_used") != mark and x1 - x0 >= 0.1:
        st.session_state["analyze_box_used"] = mark  # applied once; the slider may move it later
        st.session_state[RANGE_KEY] = (round(max(0.0, x0), 1), round(min(duration, x1), 1))
r0, r1 = st.session_state[RANGE_KEY]
zoomed = r1 - r0 < duration - 0.05
fig = build_figure(VIEW_KEY, spec, overlay, r0 if zoomed else 0.0, r1 if zoomed else duration, audio, analysis)
event = chart_slot.plotly_chart(fig, key="analyze_chart", on_select="rerun", selection_mode=("points", "box"),
                                config={"displaylogo": False})
range_row = st.container(horizontal=True, vertical_alignment="bottom")  # the button keeps its whole label
range_row.slider("Range (s): drag a box on the chart, or move these ends", 0.0, round(duration, 1), step=0.1,
                 key=RANGE_KEY, width="stretch", help="The chart redraws the range at full resolution; Play and "
                                                      "the range downloads below use it.")


def reset_range() -> None:
    st.session_state[RANGE_KEY] = (0.0, round(duration, 1))


range_row.button("Whole recording", on_click=reset_range, disabled=not zoomed, key="analyze_range_reset",
                 width="content")

# --- segments, playback ------------------------------------------------------------------
st.subheader("Turns")
import pandas as pd  # noqa: E402

seg_by_turn = {(s.start_s, s.end_s, s.speaker): s for s in analysis.segments}
intended = (json.loads(EMOTION_DEMO.with_suffix(".json").read_text())["turns"]
            if src_kind == "Emotion demo" and name == EMOTION_DEMO.name else None)


def intended_emotion(start: float, end: float) -> str:
    """The demo script's emotion for the reference turn this turn overlaps most."""
    best = max(intended, key=lambda r: min(r["end_s"], end) - max(r["start_s"], start))
    return best["emotion"] if min(best["end_s"], end) - max(best["start_s"], start) > 0 else ""


from ser.analysis.exports import turn_text  # noqa: E402

rows = []
for t_ in analysis.turns:
    s = seg_by_turn.get((t_.start_s, t_.end_s, t_.speaker))
    row = {"start (s)": round(t_.start_s, 2), "end (s)": round(t_.end_s, 2), "speaker": t_.speaker,
           "emotion": (f"{s.emotion}?" if s.uncertain else s.emotion) if s else "(too short)",
           "probability": round(s.probabilities[s.emotion], 3) if s else None}
    if analysis.words:
        row["text"] = turn_text(analysis, t_.start_s, t_.end_s, t_.speaker)
    if intended:
        row["intended"] = intended_emotion(t_.start_s, t_.end_s)
    if s:  # the turn's emotions, most probable first in the columns (ordered by the recording's mean)
        row.update({k: round(v, 3) for k, v in s.probabilities.items()})
    rows.append(row)
mean_p = {k: sum(s.probabilities[k] for s in analysis.segments) / max(1, len(analysis.segments))
          for k in analysis.labels}
table = pd.DataFrame(rows)
order = [c for c in table.columns if c not in analysis.labels] + sorted(
    [k for k in analysis.labels if k in table.columns], key=lambda k: -mean_p[k])
table = table[order]
picked = st.dataframe(table, key="analyze_table", on_select="rerun", selection_mode="single-row", hide_index=True,
                      column_config={"probability": st.column_config.ProgressColumn(
                                         "probability", min_value=0, max_value=1, format="percent",
                                         help="the leading emotion's probability"),
                                     **{k: st.column_config.ProgressColumn(k, min_value=0, max_value=1,
                                                                           format="percent")
                                        for k in analysis.labels}})
st.caption("“?” after an emotion: uncertain — no emotion leads by the model's margin. Emotion columns are ordered "
           "by their mean over this recording; “(too short)”: a turn under the model's minimum, not scored.")
chosen = None
if picked and picked.selection.rows:
    chosen = analysis.turns[picked.selection.rows[0]]
elif event and event.selection and event.selection.points:
    x = event.selection.points[0].get("x")
    if isinstance(x, (int, float)):
        chosen = next((t_ for t_ in analysis.turns if t_.start_s <= x <= t_.end_s), None)
if chosen is not None:
    st.caption(f"Playing {plain(chosen.speaker)}, {chosen.start_s:.2f}–{chosen.end_s:.2f} s (just this turn)")
    st.audio(span_wav(digest, name, data, chosen.start_s, chosen.end_s), format="audio/wav")
elif zoomed:
    st.caption(f"Playing the selected range, {r0:.1f}–{r1:.1f} s")
    st.audio(data, start_time=r0, end_time=r1)
else:
    st.audio(data)
    st.caption("Click a turn on the chart (or select it in the table) to play exactly that turn; drag a box on the "
               "chart to play and export a range.")

# --- transcript ----------------------------------------------------------------------------
if analysis.transcribed:
    from pages._transcript import show_transcript

    show_transcript(analysis, lambda lo, hi: span_wav(digest, name, data, lo, hi))
elif transcribe is False and transcript_mode != "off" and analysis.duration_s > TRANSCRIPT_AUTO_MAX_S:
    st.caption(f"No transcript: the recording is longer than {TRANSCRIPT_AUTO_MAX_S / 60:.0f} minutes (choose "
               "“always” under Settings → Transcript; it adds about a third of the analysis time).")

# --- per speaker ---------------------------------------------------------------------------
st.subheader("Speakers")
speaker_rows = analysis.speaker_rows()
if speaker_rows:
    from ser.analysis.figures import speaker_mix_chart

    st.plotly_chart(speaker_mix_chart(analysis), key="analyze_speaker_mix", config={"displaylogo": False})
    st.dataframe(pd.DataFrame(speaker_rows), hide_index=True, key="analyze_speakers")
    with st.form("analyze_name_voice", clear_on_submit=True):
        st.markdown("**This is …** — name a speaker once, and later analyses name them in every recording")
        f1, f2 = st.columns(2)
        who = f1.selectbox("Speaker", sorted({t.speaker for t in analysis.turns}), key="analyze_voice_speaker")
        as_name = f2.text_input("is (a new name, or one from your library to add this speech to it)", max_chars=80,
                                key="analyze_voice_name")
        if st.form_submit_button("Save voice"):
            from ser.diarization.voices import speaker_vectors
            from ser.serve.voices import VoiceLibrary

            try:
                vec = speaker_vectors(audio.y, audio.sr, analysis.turns).get(who)
                if vec is None:
                    raise SERError(f"{who} never talks alone for half a second or more here; choose a recording "
                                   "where they do, or enrol them from a clip on the Known voices page.")
                info = VoiceLibrary().add(as_name, [(vec[0], vec[1], f"turns of {who} in {name}")], owner=current_user())
                st.session_state["analyze_voice_saved"] = (f"Saved {info.name} ({info.samples} sample(s), "
                                                           f"{info.seconds:.1f} s of speech). Analyses from now on "
                                                           "name this voice.")
                st.rerun()
            except SERError as exc:
                st.error(plain(exc))
    if saved := st.session_state.pop("analyze_voice_saved", None):
        st.success(plain(saved))

# --- exports -------------------------------------------------------------------------------
st.subheader("Export")
files = downloads(VIEW_KEY, Path(name).stem or "analysis", analysis, Path(name).name)
with st.container(horizontal=True):  # buttons wrap onto a new line when narrow, labels whole (800 px)
    for fmt, (file_name, payload) in files.items():
        st.download_button(fmt.upper() if fmt != "textgrid" else "TextGrid", payload, file_name=file_name,
                           mime=EXT[fmt], key=f"analyze_dl_{fmt}")
if zoomed:
    st.caption(f"The selected range, {r0:.1f}–{r1:.1f} s (times in these files start at 0 at the cut)")
    part = range_downloads(VIEW_KEY, Path(name).stem or "analysis", r0, r1, audio, analysis)
    with st.container(horizontal=True):
        for fmt, (file_name, payload) in part.items():
            st.download_button(f"Range {fmt.upper() if fmt != 'textgrid' else 'TextGrid'}", payload,
                               file_name=file_name, mime="audio/wav" if fmt == "wav" else EXT[fmt],
                               key=f"analyze_range_dl_{fmt}")
