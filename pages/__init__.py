"""What the dashboard's pages share. Streamlit never lists ``__init__.py`` as a page.

``ser.models.load_model`` is wrapped here, once, with ``st.cache_resource``: every page
gets the same loaded (and warmed-up) model for a name and device.
"""

import streamlit as st


@st.cache_resource(show_spinner="Loading the emotion model…")
def get_model(name: str, device: str):
    from ser.models import load_model

    return load_model(name, device=device).warm_up()  # the first clip is then as fast as the next


def chosen_model():
    """The model chosen in app.py's sidebar (the defaults when a page was opened by its URL first)."""
    return get_model(st.session_state.get("model_name", "default"), st.session_state.get("device", "auto"))
