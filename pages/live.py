"""Live: say something and see its emotion at once.

Quick clip: record (or upload) a clip, get the probabilities within a second, keep a list
of this session's clips. Streaming: the microphone over WebRTC, scored every half second
in a worker thread (ser.serve.live), with a live meter and a scrolling timeline; stopping saves
the session to History and offers it as downloads.
"""

from __future__ import annotations

import hashlib
import time

import altair  # noqa: F401  (imported with the page, not on the first clip)
import pandas as pd
import streamlit as st

from pages import current_user, get_model, plain, signed_in_or_open, through_app

from ser.audio.decode import SUPPORTED_FORMATS, AudioLimits, load_audio
from ser.errors import SERError
from ser.analysis.exports import clips_zip, export_bytes, rows_csv
from ser.analysis.figures import EMOTION_COLOURS, live_timeline, probability_bars

through_app()  # not past app.py's sign-in gate (a first visitor's deep link)

MAX_CLIPS = 20  # quick clips kept in the session list


@st.cache_data(show_spinner=False, max_entries=64)
def classify(data: bytes, name: str, model_name: str, device: str) -> dict:
    model = get_model(model_name, device)
    audio = load_audio(data, name=name, limits=AudioLimits(min_duration_s=model.card.min_duration_s))
    result = model.predict(audio.y, audio.sr, name=name)
    return {**result, "duration_s": audio.duration_s, "source_sr": audio.source_sr,
            "channels": audio.source_channels, "codec": audio.codec}


def big_text(text: str, sub: str = "", *, colour: str = "#cfd8dc", size: str = "4.2rem", tag: str = "") -> None:
    """Type a room can read (the page's only HTML); ``tag`` names the result it shows."""
    st.markdown(f"<div class='ser-headline' data-result='{tag}' style='font-size:{size};font-weight:700;"
                f"line-height:1.1;color:{colour}'>{text}</div><div style='font-size:1.2rem;color:#546e7a'>{sub}</div>",
                unsafe_allow_html=True)


def headline(emotion: str | None, probs: dict | None, uncertain: bool, *, size: str = "4.2rem", tag: str = "") -> None:
    """The top emotion; "uncertain" when nothing clearly leads; "no speech" when nothing was scored."""
    if emotion is None:
        big_text("no speech", "listening…", colour="#90a4ae", size=size, tag=tag)
    elif uncertain:
        first, second = sorted(probs, key=probs.get, reverse=True)[:2]
        big_text("uncertain", f"maybe {first} ({probs[first]:.0%}) or {second} ({probs[second]:.0%})",
                 colour="#607d8b", size=size, tag=tag)
    else:
        big_text(emotion, f"{probs[emotion]:.0%} probability", colour=EMOTION_COLOURS.get(emotion, "#37474f"),
                 size=size, tag=tag)


# app.py's sidebar sets these; a page opened directly by its URL before app.py ran uses the defaults
MODEL_NAME = st.session_state.get("model_name", "default")
DEVICE = st.session_state.get("device", "auto")

st.title("Live")
try:
    model = get_model(MODEL_NAME, DEVICE)
except SERError as exc:
    st.error(plain(exc))
    st.stop()

mode = st.radio("Mode", ["Quick clip", "Streaming"], horizontal=True, key="live_mode", label_visibility="collapsed",
                help="Quick clip: record, stop, see the answer. Streaming: a live meter while you speak.")


# --- quick clip ----------------------------------------------------------------------------
@st.fragment  # a new clip reruns only this part of the page
def quick_clip() -> None:
    if not signed_in_or_open():  # a fragment rerun skips app.py's sign-in gate
        return
    st.caption("Record a few seconds (or upload a clip): the emotion appears as soon as the recording stops.")
    left, right = st.columns(2)
    with left:
        recording = st.audio_input("Record", sample_rate=16_000, key="live_record")
    with right:
        upload = st.file_uploader("…or upload a clip", type=list(SUPPORTED_FORMATS), key="live_upload")
    source = recording or upload
    clips: list[dict] = st.session_state.setdefault("live_clips", [])
    if source is None:
        st.info(f"Waiting for audio: record, or upload {', '.join(SUPPORTED_FORMATS)}.")
        # the same elements as a result, empty: the browser loads their code now, not on the first clip
        big, bars = st.columns([1, 1])
        with big:
            big_text("…")
        with bars:
            st.altair_chart(probability_bars(dict.fromkeys(model.labels, 0.0)), width="stretch")
    else:
        data = source.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        try:
            result = classify(data, source.name, MODEL_NAME, DEVICE)
        except SERError as exc:
            st.error(plain(exc))
        else:
            if not clips or clips[0]["sha256"] != digest:
                clips.insert(0, {"n": (clips[0]["n"] + 1) if clips else 1, "time": time.strftime("%H:%M:%S"),
                                 "name": source.name, "sha256": digest, "audio": data, "result": result})
                del clips[MAX_CLIPS:]
            big, bars = st.columns([1, 1])
            with big:
                headline(result["emotion"], result["probabilities"], result["uncertain"], tag=f"clip-{clips[0]['n']}")
                st.caption(f"{result['duration_s']:.1f} s · {result['codec']} · {result['source_sr']} Hz · "
                           f"{result['channels']} channel(s)")
            with bars:
                st.altair_chart(probability_bars(result["probabilities"]), width="stretch")
    if clips:
        st.subheader("This session's clips")
        table = pd.DataFrame([{"clip": f"#{c['n']}", "time": c["time"],
                               "emotion": f"uncertain ({c['result']['emotion']}?)" if c["result"]["uncertain"]
                               else c["result"]["emotion"],
                               "probability": c["result"]["probabilities"][c["result"]["emotion"]],
                               "duration (s)": round(c["result"]["duration_s"], 1)} for c in clips])
        left, right = st.columns([3, 2])
        left.dataframe(table, hide_index=True, key="live_clips_table",
                       column_config={"probability": st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                                     max_value=1)})
        with right:  # one player for the chosen clip keeps a rerun light however many clips there are
            n = st.selectbox("Play clip", [c["n"] for c in clips], format_func=lambda v: f"#{v}", key="live_play")
            chosen = next((c for c in clips if c["n"] == n), clips[0])
            st.audio(chosen["audio"])

            def rows() -> list[dict]:
                return [{"clip": c["n"], "time": c["time"], "name": c["name"],
                         "duration_s": round(c["result"]["duration_s"], 2), "emotion": c["result"]["emotion"],
                         "uncertain": c["result"]["uncertain"], **c["result"]["probabilities"]} for c in reversed(clips)]

            # The files as bytes, made once per list of clips: deferred downloads (a callable) lost
            # their file when the fragment reran before the click ("Deferred file … not found").
            made = st.session_state.get("live_clips_files")
            if made is None or made[0] != [c["sha256"] for c in clips]:
                table_csv = rows_csv(rows())
                made = ([c["sha256"] for c in clips], table_csv, clips_zip(
                    [(f"clip{c['n']:02d}.{c['name'].rsplit('.', 1)[-1] if '.' in c['name'] else 'wav'}", c["audio"])
                     for c in reversed(clips)], table_csv))
                st.session_state["live_clips_files"] = made
            x, y = st.columns(2)
            x.download_button("Results (CSV)", made[1], file_name="clips.csv", key="live_clips_csv")
            y.download_button("Clips + results (ZIP)", made[2], file_name="clips.zip", key="live_clips_zip")


# --- streaming -------------------------------------------------------------------------------
class Stream:
    """This browser session's live scorer, reachable from the WebRTC callback thread
    (which has no session state) even after the page replaces the scorer."""

    def __init__(self):
        self.scorer = None

    def on_frame(self, frame) -> None:  # aiortc's event loop: hand over and return
        scorer = self.scorer
        if scorer is not None:
            scorer.push_frame(frame)


def ice_configuration() -> dict:
    from ser.serve.live import ice_servers

    try:
        configured = st.secrets.get("webrtc", {}).get("ice_servers")
    except FileNotFoundError:  # no secrets file (StreamlitSecretNotFoundError is one)
        configured = None
    return {"iceServers": ice_servers(configured)}


def save_session(scorer, settings, keep_audio: bool) -> bool:
    """After Stop: the session as an Analysis, saved to History (with its audio if asked) and kept
    in the browser session for download. False (with the error shown) when it could not be made."""
    from ser.serve.history import History

    scorer.stop()
    name = time.strftime("Live %Y-%m-%d %H:%M:%S")
    try:
        analysis = scorer.to_analysis(name)
    except SERError as exc:
        st.error("The session could not be kept: " + plain(exc))
        scorer.reset(settings)
        return False
    saved = {"name": name, "analysis": analysis, "wav": scorer.wav_bytes(), "rows": scorer.timeline_rows(),
             "updates": scorer.updates(), "stats": scorer.stats(), "history_id": None, "history_error": None,
             "kept_audio": keep_audio}
    scorer.reset(settings)
    try:
        saved["history_id"] = History().save(analysis, {"model": model.id, "source": "live",
                                                        "window_s": settings.window_s, "hop_s": settings.hop_s},
                                             audio=saved["wav"] if keep_audio else None,
                                             audio_name=f"{name}.wav" if keep_audio else None,
                                             owner=current_user())
    except SERError as exc:
        saved["history_error"] = str(exc)
    st.session_state.live_saved = saved
    return True


def show_saved(saved: dict) -> None:
    """The last stopped session: where it was saved, its timeline and its downloads."""
    a, stats = saved["analysis"], saved["stats"]
    if saved["history_id"] is not None:
        st.success(f"Saved “{saved['name']}” to History (#{saved['history_id']}): {a.duration_s:.1f} s, "
                   f"{stats.scored} windows scored, {stats.no_speech} without speech"
                   + ("; with its recording." if saved["kept_audio"] else "; the recording was not kept "
                      "(download it below)."))
    else:
        st.warning(f"Not saved to History ({plain(saved['history_error'])}); download it below.")
    if saved["updates"]:
        st.altair_chart(live_timeline(saved["updates"], list(a.labels), span_s=max(30.0, a.duration_s)),
                        width="stretch")
    cols = st.columns(4)
    stem = saved["name"].replace(" ", "_").replace(":", "-")
    cols[0].download_button("Audio (WAV)", saved["wav"], file_name=f"{stem}.wav", key="live_dl_wav")
    cols[1].download_button("Timeline (CSV)", rows_csv(saved["rows"]), file_name=f"{stem}_timeline.csv",
                            key="live_dl_csv")
    files = export_bytes(a, stem=stem)
    for col, fmt in zip(cols[2:], ("json", "textgrid")):
        file_name, payload = files[fmt]
        col.download_button(fmt.upper() if fmt == "json" else "TextGrid", payload, file_name=file_name,
                            key=f"live_dl_{fmt}")


def streaming() -> None:
    from streamlit_webrtc import WebRtcMode, create_audio_sink_track, webrtc_streamer

    from ser.serve.live import LiveScorer
    from ser.serve.live_engine import LiveSettings

    st.caption("Press START and speak: every half second the last two seconds are scored. Silence shows "
               "“no speech”, never a guess. STOP saves the session's results to History.")
    keep_audio = st.checkbox("…with the recording (kept only if you tick this)", False, key="live_keep_audio",
                             help="Without it, the audio stays in this browser session only (download it below "
                                  "after Stop) and History keeps the timeline and emotions.")
    with st.expander("Settings"):
        c1, c2, c3 = st.columns(3)
        window_s = c1.slider("Window (s)", 1.0, 4.0, 2.0, 0.5, key="live_window")
        hop_s = c2.slider("Update every (s)", 0.25, 1.0, 0.5, 0.25, key="live_hop")
        vad = c3.slider("Voice threshold", 0.2, 0.8, 0.5, 0.05, key="live_vad",
                        help="silero-vad speech probability counted as speech")
    settings = LiveSettings(window_s=window_s, hop_s=hop_s, vad_threshold=vad, min_speech_s=min(0.5, window_s / 2))
    stream: Stream = st.session_state.setdefault("live_stream", Stream())
    try:
        rtc = ice_configuration()
    except SERError as exc:
        st.error(plain(exc))
        return

    # the scorer's worker process starts now, so it is warm by the time audio arrives
    sc = stream.scorer
    if sc is None or sc.model is not model or sc.stats().error:
        if sc is not None:
            sc.close()
        stream.scorer = LiveScorer(model, settings)
    elif sc.stats().received_s == 0 and sc.settings != settings:
        sc.reset(settings)
    ctx = webrtc_streamer(
        key="live_mic", mode=WebRtcMode.SENDONLY, rtc_configuration=rtc,
        media_stream_constraints={"audio": {"echoCancellation": False, "noiseSuppression": False,
                                            "autoGainControl": False}, "video": False},
        sink_audio_track=create_audio_sink_track(stream.on_frame, key="live_sink"),
        translations={"start": "Start", "stop": "Stop"})
    playing = ctx.state.playing

    scorer = stream.scorer
    if not playing and scorer is not None and scorer.stats().received_s > 0:  # stopped: save the session
        if not save_session(scorer, settings, keep_audio):
            return

    @st.fragment(run_every=0.5 if playing else None)
    def meter() -> None:
        if not signed_in_or_open():  # a fragment rerun skips app.py's sign-in gate
            return
        sc = stream.scorer if playing else None
        if sc is None:
            return
        st_ = sc.stats()
        if not sc.wait_ready(0):
            if st_.error:
                st.error(f"The live scorer could not start: {st_.error}")
            else:
                st.info("Loading the live scorer…")
            return
        if st_.error:
            st.error(f"Live scoring stopped: {st_.error}. Press Stop and Start again.")
            return
        ups = sc.updates()
        latest = sc.latest
        big, bars = st.columns([1, 1])
        with big:
            if latest is None:
                big_text("listening…", colour="#90a4ae", size="2.4rem")
                st.caption(f"The first update comes after {min(settings.first_s, settings.window_s):g} s of audio.")
            else:
                headline(latest.emotion, latest.probabilities, latest.uncertain, size="3.4rem")
                st.caption(f"window {latest.start_s:.1f}–{latest.end_s:.1f} s · level {latest.level_db:.0f} dBFS · "
                           f"speech {latest.speech_s:.1f} s · ready {latest.latency_s * 1000:.0f} ms after its "
                           "last sample")
        with bars:
            if latest is not None and not latest.no_speech:
                st.altair_chart(probability_bars(latest.probabilities), width="stretch")
        if ups:
            st.altair_chart(live_timeline(ups, list(model.labels)), width="stretch")
            recent = [{"window end (s)": f"{u.end_s:.1f}", "emotion": u.emotion or "no speech",
                       "probability": f"{u.probabilities[u.emotion]:.0%}" if u.probabilities else "",
                       "uncertain": "yes" if u.uncertain else "", "latency (ms)": round(u.latency_s * 1000)}
                      for u in reversed(ups[-6:])]
            st.table(pd.DataFrame(recent).set_index("window end (s)"))
        cpu = st_.worker_cpu_s / st_.received_s if st_.received_s else 0.0
        note = f" · {st_.dropped_s:.1f} s dropped (the worker is stuck)" if st_.dropped_s else ""
        if st_.skipped_s:
            note += f" · {st_.skipped_s:.1f} s not scored live (the machine is busy; kept and scored on Stop)"
        if st_.lost_s:
            note += f" · {st_.lost_s:.1f} s lost on the way (filled with silence)"
        trunc = " · past the session limit: no longer kept for saving" if st_.truncated else ""
        st.caption(f"{st_.received_s:.1f} s received · {st_.scored} windows scored, {st_.no_speech} without speech · "
                   f"worker CPU {cpu:.0%} of one core{note}{trunc}")

    meter()

    saved = st.session_state.get("live_saved")
    if saved and not playing:
        show_saved(saved)

if mode == "Quick clip":
    quick_clip()
else:
    streaming()
