"""Datasets: explore a labelled corpus, and the classroom mode (guess, then reveal)."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import streamlit as st

from pages import plain, through_app


from ser.training.datasets import READERS, corpus_stats, read_corpus
from ser.errors import SERError

through_app()  # not past app.py's sign-in gate (a first visitor's deep link)

ROOT = Path(__file__).resolve().parent.parent
SHARED_RAVDESS = ROOT.parent / "shared" / "data" / "ravdess16k"

st.title("Datasets")
st.caption("Point at a local corpus folder: class balance, clips per speaker, durations before and after "
           "silence trimming; then play clips to a class, let them guess, and reveal.")

c1, c2 = st.columns([3, 1])
default = str(SHARED_RAVDESS) if SHARED_RAVDESS.is_dir() else ""
folder = c1.text_input("Corpus folder (or manifest file for dusha/csv)", default, key="datasets_folder")
corpus = c2.selectbox("Corpus", list(READERS), key="datasets_corpus")
if not folder:
    st.info("Enter the folder of a corpus (RAVDESS, CREMA-D, TESS, SAVEE, EmoDB, Dusha, or a folder with a CSV).")
    st.stop()


@st.cache_data(show_spinner="Reading the corpus…", max_entries=4)
def load(corpus: str, folder: str):
    utts = read_corpus(corpus, folder)
    return [u.to_dict() for u in utts], corpus_stats(utts)


try:
    utts, stats = load(corpus, folder)
except SERError as exc:
    st.error(plain(exc))
    st.stop()
if not utts:
    st.warning("No labelled clips found there.")
    st.stop()

m1, m2, m3 = st.columns(3)
m1.metric("Clips", stats["clips"])
m2.metric("Speakers", len(stats["speakers"]))
m3.metric("Hours", f"{sum(stats['durations_s']) / 3600:.2f}")
left, right = st.columns(2)
left.subheader("Clips per emotion")
left.bar_chart(pd.Series(stats["labels"], name="clips"))
right.subheader("Clips per speaker")
right.bar_chart(pd.Series(stats["speakers"], name="clips"))
st.subheader("Durations")
dur = pd.DataFrame({"before trimming": pd.Series(stats["sample_before_s"]),
                    "after trimming": pd.Series(stats["sample_after_s"])})
st.dataframe(dur.describe().T.round(2), key="datasets_durations")
st.caption(f"Before/after trimming silence ({stats['trim_db']:.0f} dB below the peak) on a random sample of "
           f"{stats['sample_size']} clips; genders: {stats['genders']}.")

# --- classroom mode ---------------------------------------------------------------------
st.subheader("Classroom: guess the emotion")
if "datasets_clip" not in st.session_state or st.button("Next clip", key="datasets_next"):
    st.session_state.datasets_clip = random.randrange(len(utts))
    st.session_state.datasets_revealed = False
    st.session_state.pop("datasets_guess", None)  # the radio below starts empty for the new clip
clip = utts[st.session_state.datasets_clip % len(utts)]
st.audio(str(clip["path"]))
labels = sorted(stats["labels"])
guess = st.radio("Your guess", labels, horizontal=True, index=None, key="datasets_guess")
if st.button("Reveal", key="datasets_reveal"):
    st.session_state.datasets_revealed = True
if st.session_state.get("datasets_revealed"):
    from pages import chosen_model
    from ser.audio.decode import load_audio

    st.markdown(f"Intended emotion: **{plain(clip['label'])}** (speaker {plain(clip['speaker'])})"
                + (f" — your guess, {plain(guess)}, was {'right' if guess == clip['label'] else 'not it'}." if guess else ""))
    try:
        model = chosen_model()
        audio = load_audio(clip["path"])
        r = model.predict(audio.y, audio.sr)
        st.bar_chart(pd.Series(r["probabilities"], name="model probability"))
        st.caption(f"The model says {r['emotion']}{' (uncertain)' if r['uncertain'] else ''}. "
                   + ("Careful: this clip's speaker may have been in the model's training data."
                      if "ravdess" in clip["speaker"] else ""))
    except SERError as exc:
        st.error(plain(exc))
