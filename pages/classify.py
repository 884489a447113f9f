"""Classify one clip: upload or record, then see the emotion probabilities."""

import streamlit as st

from ser.audio import SUPPORTED_FORMATS, AudioLimits, load_audio
from ser.errors import SERError


@st.cache_resource(show_spinner="Loading the emotion model…")
def get_model(name: str, device: str):
    from ser.models import load_model

    return load_model(name, device=device)


@st.cache_data(show_spinner=False, max_entries=64)
def classify(data: bytes, name: str, model_name: str, device: str) -> dict:
    model = get_model(model_name, device)
    audio = load_audio(data, name=name, limits=AudioLimits(min_duration_s=model.card.min_duration_s))
    result = model.predict(audio.y, audio.sr, name=name)
    return {**result, "duration_s": audio.duration_s, "source_sr": audio.source_sr,
            "channels": audio.source_channels, "codec": audio.codec}


def probability_chart(probs: dict):
    """Horizontal bars, most probable first."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame({"emotion": list(probs), "probability": list(probs.values())})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("emotion:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False, labelFontSize=14)),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
    ).properties(height=36 * len(df))


# app.py's sidebar sets these; a page opened directly by its URL before app.py ran uses the defaults
MODEL_NAME = st.session_state.get("model_name", "default")
DEVICE = st.session_state.get("device", "auto")

st.title("Speech emotion")
st.caption("Upload or record a short clip of speech; the model gives the probability of each emotion.")

try:
    model = get_model(MODEL_NAME, DEVICE)
except SERError as exc:
    st.error(str(exc))
    st.stop()

left, right = st.columns(2)
with left:
    upload = st.file_uploader("Upload a clip", type=list(SUPPORTED_FORMATS), key="classify_upload")
with right:
    recording = st.audio_input("…or record one", sample_rate=16_000, key="classify_record")

source = recording or upload
if source is None:
    st.info(f"Waiting for audio ({', '.join(SUPPORTED_FORMATS)}).")
else:
    data = source.getvalue()
    st.audio(data)
    try:
        result = classify(data, source.name, MODEL_NAME, DEVICE)
    except SERError as exc:
        st.error(str(exc))
    else:
        probs = result["probabilities"]
        top = result["emotion"]
        headline = f"uncertain (maybe {top})" if result["uncertain"] else top
        st.metric("Emotion", headline)
        note = " — no emotion clearly leads" if result["uncertain"] else ""
        st.caption(f"{probs[top]:.0%} probability{note}")
        st.altair_chart(probability_chart(probs), use_container_width=True)
        st.caption(f"{result['duration_s']:.1f} s · {result['codec']} · {result['source_sr']} Hz · "
                   f"{result['channels']} channel(s)")

with st.expander("About this model"):
    card = model.card
    m = card.metrics
    if m:
        st.write(f"**{card.name}** ({card.architecture}, {card.parameters:,} parameters): "
                 f"UAR {m['uar']['mean']:.3f} ± {m['uar']['std']:.3f}, accuracy {m['accuracy']['mean']:.3f}, "
                 f"macro-F1 {m['macro_f1']['mean']:.3f}")
        st.caption(m.get("protocol", ""))
    st.write("Labels: " + ", ".join(card.labels))
    st.caption(card.licence)
