"""History: every saved analysis; reopen, compare or delete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ser.errors import SERError
from pages import history_owner, plain, through_app

from ser.serve.history import History

through_app()  # not past app.py's sign-in gate (a first visitor's deep link)

st.title("History")
try:
    hist = History()
except SERError as exc:
    st.error(plain(exc))
    st.stop()
st.caption("Analyses saved on this machine (set $SER_HISTORY_DB to move the file). Audio is kept only when you "
           "ticked that box on the Analyze or Live page. Set "
           "$SER_HISTORY_AUDIO_DAYS to drop kept audio after that many days.")


@st.cache_resource
def _retention_applied(path: str) -> int:
    """Retention runs once per server start (and per database file)."""
    return History(path).apply_retention()


try:
    dropped = _retention_applied(str(hist.path))
except SERError as exc:
    st.error(plain(exc))
    dropped = 0
if dropped:
    st.info(f"{dropped} recording(s) older than $SER_HISTORY_AUDIO_DAYS days were deleted at start; "
            "their analyses are kept.")

owner = history_owner()  # None: everyone's (no sign-in, or an admin)
stats = hist.stats(owner)
with st.expander(f"Stored: {stats['analyses']} {'analysis' if stats['analyses'] == 1 else 'analyses'}, "
                 f"{stats['with_audio']} with audio — "
                 f"{stats['disk_bytes'] / 1024 / 1024:.1f} MB on disk", expanded=False):
    st.markdown(f"Location: `{stats['path']}`  \nKept audio: {stats['audio_bytes'] / 1024 / 1024:.1f} MB")
    c1, c2 = st.columns(2)
    if stats["analyses"]:
        # Made on request and held by this session as bytes: a deferred (on-click) download is a
        # file no session holds, which the shared-mode media guard (ser.serve.sessions) refuses.
        made = st.session_state.get("history_export_zip")
        if made is None or made[0] != (owner, stats["analyses"], stats["disk_bytes"]):
            if c1.button("Prepare export (ZIP)", key="history_export_prepare"):
                with st.spinner("Packing every analysis, its audio and the voice library…"):
                    made = ((owner, stats["analyses"], stats["disk_bytes"]), hist.export_all(owner))
                st.session_state["history_export_zip"] = made
        if made is not None and made[0] == (owner, stats["analyses"], stats["disk_bytes"]):
            c1.download_button(f"Export all (ZIP, {len(made[1]) / 1024 / 1024:.1f} MB)", made[1],
                               file_name="ser-history.zip", mime="application/zip", key="history_export_all",
                               on_click="ignore")
        sure = c2.checkbox("I want to delete everything", key="history_delete_all_confirm")
        if c2.button("Delete all", key="history_delete_all", type="secondary", disabled=not sure):
            n = hist.delete_all(owner)
            st.session_state.pop("history_delete_all_confirm", None)
            st.toast(f"Deleted {n} analyses and their audio; the file was compacted.")
            st.rerun()

entries = hist.list(owner)
if not entries:
    st.info("Nothing saved yet: analyses from the Analyze page and live sessions appear here.")
    st.stop()

query = st.text_input("Search the transcripts", key="history_find", placeholder="a word or phrase",
                      help="Analyses made with the transcript on: the lines that contain it, and only their analyses "
                           "in the table below.")
if query.strip():
    hits = hist.search(query, owner)
    st.caption(f"{len(hits)} line(s) with “{plain(query.strip())}” in {len({h['id'] for h in hits})} analysis(es)")
    if hits:
        st.dataframe(pd.DataFrame([{"id": h["id"], "name": h["name"], "start (s)": round(h["start_s"], 2),
                                    "speaker": h["speaker"] or "?", "text": h["text"]} for h in hits]),
                     hide_index=True, key="history_hits")
    entries = [e for e in entries if e.id in {h["id"] for h in hits}]
    if not entries:
        st.stop()

table = pd.DataFrame([{"id": e.id, "saved": e.created, "name": e.name, "duration (s)": round(e.duration_s, 1),
                       "speakers": e.speakers, "turns": e.turns, "model": e.settings.get("model"),
                       "label set": e.settings.get("label_set"), "adaptation": e.settings.get("adapt", "none"),
                       "audio kept": e.has_audio,
                       **({"user": e.owner} if st.session_state.get("ser_admin") else {})} for e in entries])
picked = st.dataframe(table, key="history_table", on_select="rerun", selection_mode="multi-row", hide_index=True)
rows = picked.selection.rows if picked and picked.selection else []
chosen = [entries[i] for i in rows]
if not chosen:
    st.caption("Select one analysis to reopen it, two to compare them.")
    st.stop()


if len(chosen) >= 2:
    from ser.analysis.figures import speaker_mix_chart

    st.subheader("Compare")
    if len(chosen) > 3:
        st.caption(f"The first 3 of the {len(chosen)} selected, side by side.")
    cols = st.columns(len(chosen[:3]))
    for col, e in zip(cols, chosen[:3]):
        a, settings, _ = hist.get(e.id, owner)
        col.markdown(f"**#{e.id} {plain(e.name)}** — {plain(e.created)}, {plain(settings.get('model'))}, "
                     f"{a.duration_s:.1f} s, {len(a.speakers)} speaker(s)")
        col.plotly_chart(speaker_mix_chart(a), key=f"history_cmp_chart_{e.id}")
        col.dataframe(pd.DataFrame(a.speaker_rows()), hide_index=True, key=f"history_cmp_{e.id}")
    st.stop()

e = chosen[0]
try:
    a, settings, audio = hist.get(e.id, owner)
except SERError as exc:
    st.error(plain(exc))
    st.stop()
st.subheader(f"#{e.id} {plain(e.name)}")
st.caption(f"Saved {e.created} · {a.duration_s:.1f} s · model {settings.get('model')} · "
           f"window {settings.get('window_s')} s · adaptation {settings.get('adapt', 'none')} · audio SHA-256 {e.audio_sha256[:12]}…")
from ser.analysis.figures import analysis_figure  # noqa: E402

if audio:
    from ser.audio.decode import load_audio

    st.audio(audio)
    y = load_audio(audio, name=e.name)
    st.plotly_chart(analysis_figure(y.y, y.sr, a), key="history_chart")
else:  # the chart from the stored analysis: speakers and emotion, no waveform or spectrogram
    st.caption("The audio of this analysis was not kept (the Analyze page's \"…with their audio\" box was not ticked), so "
               "there is no waveform, spectrogram or playback; speakers and emotion are the stored analysis.")
    st.plotly_chart(analysis_figure(np.zeros(0, dtype=np.float32), 16_000, a), key="history_chart")
st.dataframe(pd.DataFrame(a.speaker_rows()), hide_index=True, key="history_speakers")
if a.utterances:
    st.dataframe(pd.DataFrame([{"start (s)": round(u.start_s, 2), "end (s)": round(u.end_s, 2),
                                "speaker": u.speaker or "?", "emotion": u.emotion or "(unscored)", "text": u.text}
                               for u in a.utterances]), hide_index=True, key="history_transcript")
st.dataframe(pd.DataFrame([{"start (s)": s.start_s, "end (s)": s.end_s, "speaker": s.speaker,
                            "emotion": f"{s.emotion}?" if s.uncertain else s.emotion} for s in a.segments]),
             hide_index=True, key="history_segments")

from ser.analysis.exports import export_bytes  # noqa: E402

files = export_bytes(a, stem=Path(e.name).stem or "analysis", media=Path(e.name).name)
with st.container(horizontal=True):  # wraps when narrow: whole labels at 800 px
    for fmt, (file_name, payload) in files.items():
        st.download_button(fmt.upper() if fmt != "textgrid" else "TextGrid", payload, file_name=file_name,
                           key=f"history_dl_{fmt}")
    delete = st.button("Delete", key="history_delete", type="secondary")
if delete:
    hist.delete(e.id, owner)
    st.rerun()
