"""Entry point of the dashboard: navigation and the shared sidebar (model and device).

Run with ``make run`` (or ``streamlit run app.py``).
"""

import ser  # noqa: F401  (first: ser.threads' yielding-thread policy is set before torch starts)
import streamlit as st

st.set_page_config(page_title="ser — speech emotion", page_icon=":material/graphic_eq:", layout="wide")

from pages import only_this, sign_in_gate, warm_start  # noqa: E402
from ser.emotion.folder import available_models  # noqa: E402  (torch is imported lazily by load_model)

warm_start()  # the demo analysed in the background, once per server process
sign_in_gate()  # nothing below is shown to someone who has not signed in, when sign-in is configured

with st.sidebar:
    st.header("Model")
    models = available_models()
    if not models:
        only_this(lambda: st.error("No model found under models/. Train one with `ser train` (see README)."),
                  "No model")
    # Inputs are copied into plain session keys that every page reads.
    wanted = st.session_state.get("model_choice", "default")  # the Models page can set it
    st.session_state.model_name = st.selectbox(
        "Emotion model", models, index=models.index(wanted) if wanted in models else 0)
    devices = ["auto", "cpu", "cuda"]
    st.session_state.device = st.radio(
        "Device", devices, index=devices.index(st.session_state.get("device_choice", "auto")),
        horizontal=True, help="auto uses a CUDA GPU when one is present")

pg = st.navigation([
    st.Page("pages/analyze.py", title="Analyze a recording", icon=":material/monitoring:", default=True),
    st.Page("pages/live.py", title="Live", icon=":material/mic:"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:"),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/voices.py", title="Known voices", icon=":material/record_voice_over:"),
])
pg.run()
