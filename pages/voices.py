"""Known voices: the people you enrolled, and how each sounded across your recordings."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from pages import current_user, history_owner, plain, through_app

from ser.errors import SERError
from ser.serve.voices import VoiceLibrary

through_app()  # not past app.py's sign-in gate (a first visitor's deep link)

st.title("Known voices")
st.caption("A voice is a name and speaker embeddings (192 numbers per sample; never audio) taken from clips or from "
           "a speaker's turns on the Analyze page (“This is …”). Every analysis compares its speakers with these and "
           "names the ones it recognises; a doubtful match is shown as “may be …” and not named. Embeddings of a "
           "voice are biometric data: they stay in this machine's History database, go into History's “Export "
           "all” and are removed by its “Delete all” (docs/privacy.md).")
try:
    lib = VoiceLibrary()
except SERError as exc:
    st.error(plain(exc))
    st.stop()
me = current_user()
voices = lib.list(me)

if voices:
    st.dataframe(pd.DataFrame([{"voice": v.name, "samples": v.samples, "speech (s)": round(v.seconds, 1),
                                "since": v.created, "from": "; ".join(v.sources[:4]) + (" …" if len(v.sources) > 4 else "")}
                               for v in voices]), hide_index=True, key="voices_table")
else:
    st.info("No voices yet. Enrol one from clips below, or name a speaker on the Analyze page.")

with st.expander("Enrol from clips", expanded=not voices):
    with st.form("voices_add", clear_on_submit=True):
        new_name = st.text_input("Name", max_chars=80, key="voices_add_name")
        clips = st.file_uploader("Clips of this one person talking alone (a few seconds or more each)",
                                 accept_multiple_files=True, key="voices_add_clips")
        if st.form_submit_button("Enrol", type="primary"):
            from ser.serve.voices import enrol_clips

            try:
                info = enrol_clips(lib, new_name, [(f.getvalue(), f.name) for f in clips or []], owner=me)
                st.success(plain(f"{info.name}: {info.samples} sample(s), {info.seconds:.1f} s of speech."))
                st.rerun()
            except SERError as exc:
                st.error(plain(exc))


def _change(fn, *args) -> None:
    """Run a library change and redraw the page, or say why it was refused."""
    try:
        fn(*args, owner=me)
    except SERError as exc:
        st.error(plain(exc))
        return
    st.rerun()


if voices:
    names = [v.name for v in voices]
    c1, c2, c3 = st.columns(3)
    with c1.form("voices_rename"):
        old = st.selectbox("Rename", names, key="voices_rename_old")
        new = st.text_input("to", max_chars=80, key="voices_rename_new")
        if st.form_submit_button("Rename"):
            _change(lib.rename, old, new)
    with c2.form("voices_merge"):
        src = st.selectbox("Merge", names, key="voices_merge_src")
        dst = st.selectbox("into (the same person)", names, index=min(1, len(names) - 1), key="voices_merge_dst")
        if st.form_submit_button("Merge"):
            _change(lib.merge, src, dst)
    with c3.form("voices_delete"):
        gone = st.selectbox("Delete", names, key="voices_delete_name")
        sure = st.checkbox("Delete this voice and its embeddings", key="voices_delete_sure")
        if st.form_submit_button("Delete"):
            if sure and lib.delete(gone, owner=me):
                st.rerun()
            elif not sure:
                st.warning("Tick the box to confirm.")

# --- across recordings -------------------------------------------------------------------
st.subheader("Across recordings")
from ser.serve.history import History  # noqa: E402

try:
    rows = History().voice_rows(history_owner())
except SERError as exc:
    st.error(plain(exc))
    rows = []
if not rows:
    st.caption("Analyses saved to History that named a known voice appear here: each voice's talk time and emotion "
               "mix per recording, in time order.")
    st.stop()
df = pd.DataFrame(rows)
who = st.selectbox("Voice", sorted(df["voice"].unique()), key="voices_across_voice")
mine = df[df["voice"] == who].reset_index(drop=True)
probs = [c for c in mine.columns if c.startswith("p_") and mine[c].notna().any()]
mine["session"] = [f"{i + 1}. {r} ({c[:10]})" for i, (r, c) in enumerate(zip(mine["recording"], mine["created"]))]
import plotly.graph_objects as go  # noqa: E402

from ser.analysis.figures import EMOTION_COLOURS  # noqa: E402

fig = go.Figure()
for c in probs:
    label = c[2:]
    fig.add_bar(x=mine["session"], y=mine[c].fillna(0.0), name=label, marker_color=EMOTION_COLOURS.get(label),
                hovertemplate="%{x}<br>" + label + " %{y:.0%}<extra></extra>")
fig.update_layout(barmode="stack", height=360, yaxis=dict(title="share of emotion", tickformat=".0%", range=[0, 1]),
                  xaxis=dict(title="recordings, in time order", type="category"), margin=dict(t=30, b=10),
                  legend=dict(orientation="h", y=-0.35))
st.plotly_chart(fig, key="voices_across_chart", config={"displaylogo": False})
table = mine[["created", "recording", "talk_s", "turns", "share_of_speech", "top_emotion", "similarity", *probs]]
st.dataframe(table, hide_index=True, key="voices_across_table")
buf = io.StringIO()
from ser.analysis.exports import csv_cell  # noqa: E402

table.map(csv_cell).to_csv(buf, index=False)
st.download_button("CSV", buf.getvalue(), file_name="voice_across_recordings.csv", mime="text/csv",
                   key="voices_across_csv")
