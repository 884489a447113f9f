"""History: every saved analysis; reopen, compare or delete."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ser.errors import SERError
from ser.history import History

st.title("History")
try:
    hist = History()
except SERError as exc:
    st.error(str(exc))
    st.stop()
st.caption(f"Analyses saved on this machine ({hist.path}; set $SER_HISTORY_DB to move it). Audio is kept only "
           "when you ticked that box on the Analyze page; a live session always keeps its own.")

entries = hist.list()
if not entries:
    st.info("Nothing saved yet: analyses from the Analyze page and live sessions appear here.")
    st.stop()

table = pd.DataFrame([{"id": e.id, "saved": e.created, "name": e.name, "duration (s)": round(e.duration_s, 1),
                       "speakers": e.speakers, "turns": e.turns, "model": e.settings.get("model"),
                       "label set": e.settings.get("label_set"), "audio kept": e.has_audio} for e in entries])
picked = st.dataframe(table, key="history_table", on_select="rerun", selection_mode="multi-row", hide_index=True)
rows = picked.selection.rows if picked and picked.selection else []
chosen = [entries[i] for i in rows]
if not chosen:
    st.caption("Select one analysis to reopen it, two to compare them.")
    st.stop()


if len(chosen) >= 2:
    st.subheader("Compare")
    cols = st.columns(len(chosen[:3]))
    for col, e in zip(cols, chosen[:3]):
        a, settings, _ = hist.get(e.id)
        col.markdown(f"**#{e.id} {e.name}** — {e.created}, {settings.get('model')}")
        col.dataframe(pd.DataFrame(a.speaker_rows()), hide_index=True, key=f"history_cmp_{e.id}")
    st.stop()

e = chosen[0]
try:
    a, settings, audio = hist.get(e.id)
except SERError as exc:
    st.error(str(exc))
    st.stop()
st.subheader(f"#{e.id} {e.name}")
st.caption(f"Saved {e.created} · {a.duration_s:.1f} s · model {settings.get('model')} · "
           f"window {settings.get('window_s')} s · audio SHA-256 {e.audio_sha256[:12]}…")
if audio:
    from ser.audio import load_audio
    from ser.figures import analysis_figure

    st.audio(audio)
    y = load_audio(audio, name=e.name)
    st.plotly_chart(analysis_figure(y.y, y.sr, a), key="history_chart")
st.dataframe(pd.DataFrame(a.speaker_rows()), hide_index=True, key="history_speakers")
st.dataframe(pd.DataFrame([{"start (s)": s.start_s, "end (s)": s.end_s, "speaker": s.speaker,
                            "emotion": f"{s.emotion}?" if s.uncertain else s.emotion} for s in a.segments]),
             hide_index=True, key="history_segments")

from ser.exports import export_bytes  # noqa: E402

files = export_bytes(a, stem=Path(e.name).stem or "analysis")
cols = st.columns(len(files) + 1)
for col, (fmt, (file_name, payload)) in zip(cols, files.items()):
    col.download_button(fmt.upper() if fmt != "textgrid" else "TextGrid", payload, file_name=file_name,
                        key=f"history_dl_{fmt}")
if cols[-1].button("Delete", key="history_delete", type="secondary"):
    hist.delete(e.id)
    st.rerun()
