"""The Analyze page's transcript: who said what, how they sounded, and a search box.

Not a page itself (the leading underscore keeps it out of Streamlit's page list)."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from pages import plain
from ser.analysis.result import Analysis


def matches(a: Analysis, query: str) -> list[int]:
    """Indices of the utterances whose text holds ``query`` (case and accents as typed are
    compared case-insensitively); all of them for an empty query."""
    q = query.strip().casefold()
    return [i for i, u in enumerate(a.utterances) if not q or q in u.text.casefold()]


def show_transcript(a: Analysis, clip: Callable[[float, float], bytes]) -> None:
    """The utterance table (text beside speaker and emotion; a selected line plays), filtered by
    the search box. ``clip(start, end)``: that span of the recording as WAV bytes."""
    t = a.provenance.get("transcript", {})
    st.subheader("Transcript")
    lang = t.get("language") or "?"
    how = "given" if t.get("language_given") else (
        f"detected, {t['language_probability']:.0%} sure" if t.get("language_probability") is not None else "detected")
    if not a.utterances:
        st.caption(f"No words were recognised in the speech ({lang}, {how}).")
        return
    query = st.text_input("Find in the transcript", key="analyze_find", placeholder="a word or phrase",
                          help="Shows the lines that contain it; select a line to play it.")
    rows = matches(a, query)
    st.caption(f"{len(a.words)} words, {len(a.utterances)} lines · language {lang} ({how}) · Whisper-base, offline"
               + (f" · {len(rows)} line(s) with “{plain(query.strip())}”" if query.strip() else ""))
    if not rows:
        st.info("No line contains that text.")
        return
    table = pd.DataFrame([{"start (s)": round(u.start_s, 2), "end (s)": round(u.end_s, 2),
                           "speaker": u.speaker or "?",
                           "emotion": (f"{u.emotion}?" if u.uncertain else u.emotion) if u.emotion else "(unscored)",
                           "probability": round(u.probabilities[u.emotion], 3) if u.emotion else None,
                           "text": u.text} for u in (a.utterances[i] for i in rows)])
    picked = st.dataframe(table, key="analyze_transcript_table", on_select="rerun", selection_mode="single-row",
                          hide_index=True, column_config={
                              "probability": st.column_config.ProgressColumn("probability", min_value=0, max_value=1,
                                                                             format="percent"),
                              "text": st.column_config.TextColumn("text", width="large")})
    if picked and picked.selection.rows:
        u = a.utterances[rows[picked.selection.rows[0]]]
        st.caption(f"Playing {plain(u.speaker or '?')}, {u.start_s:.2f}–{u.end_s:.2f} s: “{plain(u.text)}”")
        st.audio(clip(u.start_s, u.end_s), format="audio/wav")
