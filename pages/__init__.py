"""What the dashboard's pages share. Streamlit never lists ``__init__.py`` as a page.

``ser.emotion.model.load_model`` is wrapped here, once, with ``st.cache_resource``: every page
gets the same loaded (and warmed-up) model for a name and device.
"""

import contextlib

# Import these in full here, in the thread that runs the page, before warm_start's thread starts:
# plotly looks pandas and PIL up in sys.modules without importing them, and while the warm-up
# thread was importing pandas (through pyannote) the first visitor's page found it half-initialised
# ("partially initialized module 'pandas' has no attribute 'Series'": 1 fresh start in 12).
import pandas  # noqa: F401
import streamlit as st

with contextlib.suppress(ImportError):
    import PIL.Image  # noqa: F401


@st.cache_resource(show_spinner="Loading the emotion model…")
def get_model(name: str, device: str):
    from ser.emotion.model import load_model

    return load_model(name, device=device).warm_up()  # the first clip is then as fast as the next


@st.cache_resource(show_spinner=False)
def warm_start():
    """Once per server process, in the background: warm the diarizer, load the default model (into
    ``get_model``'s cache, so the first visitor's page finds it loaded) and analyse the emotion
    demo with the Analyze page's default settings, so that the first visitor's first screen (the
    analysed demo) comes from the pipeline's stage cache. ``SER_WARM_DEMO=0`` turns it off."""
    import os
    import threading
    import time

    if os.environ.get("SER_WARM_DEMO", "1") == "0":
        return None

    def run() -> None:
        from pathlib import Path

        t0 = time.perf_counter()
        try:
            from ser.audio.decode import load_audio
            from ser.diarization.backends import warm_up
            from ser.analysis.pipeline import analyze

            warm_up()  # the diarization networks, CAM++ optimised for serving, as the API does at start
            demo = Path(__file__).resolve().parent.parent / "assets" / "demo_emotions.flac"
            model = get_model("default", "auto")  # the same cached model the pages then use
            analyze(load_audio(demo.read_bytes(), name=demo.name), model=model, name=demo.name)
            print(f"ser: warmed up in {time.perf_counter() - t0:.1f} s (models loaded, demo analysed)", flush=True)
        except Exception as exc:  # a warm-up that fails only means the first visitor waits
            print(f"ser: warming the demo failed ({exc}); the first analysis will be slower", flush=True)

    t = threading.Thread(target=run, name="ser-warm-demo", daemon=True)
    t.start()
    return t


def chosen_model():
    """The model chosen in app.py's sidebar (the defaults when a page was opened by its URL first)."""
    return get_model(st.session_state.get("model_name", "default"), st.session_state.get("device", "auto"))


def _secrets() -> dict:
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # no secrets file: nothing configured
        return {}


def sign_in_gate() -> str | None:
    """Called by app.py before any page: the signed-in user's name, or None when the dashboard
    runs for one person on loopback with no sign-in configured. Shows the sign-in form (and
    nothing else) until a user signs in; refuses to run on a network address without sign-in."""
    from ser.serve.auth import auth_config, sign_in_required
    from ser.errors import SERError

    try:
        cfg = auth_config(_secrets())
    except SERError as exc:
        only_this(lambda: st.error(str(exc)), "Configuration error")
    reason = sign_in_required(st.get_option("server.address"), cfg)
    if reason:
        only_this(lambda: st.error(reason), "Sign-in required")
    if not cfg.enabled:
        return None
    if cfg.users:
        user = st.session_state.get("ser_user")
        if not user:
            only_this(lambda: _password_form(cfg))
    else:  # an OIDC provider through Streamlit's own st.login
        if not st.user.is_logged_in:
            only_this(lambda: (st.title("Sign in"), st.button("Sign in", on_click=st.login, key="signin_oidc")))
        user = str(st.user.get("email") or st.user.get("name") or "user")
    st.session_state["ser_admin"] = user in cfg.admins
    with st.sidebar:
        st.caption(f"Signed in as **{user}**" + (" (admin: sees everyone's History)" if user in cfg.admins else ""))
        if st.button("Sign out", key="signout"):
            st.session_state.pop("ser_user", None)
            if not cfg.users:
                st.logout()
            st.rerun()
    return user


def only_this(body, title: str = "Sign in") -> None:
    """Show ``body`` and nothing else, whatever the URL: a navigation of one hidden page. (Stopping
    before st.navigation would let Streamlit list the pages/ folder, and open its pages directly.)"""
    st.navigation([st.Page(body, title=title, url_path="only", default=True)], position="hidden").run()
    st.stop()


def _password_form(cfg) -> None:
    st.title("Sign in")
    with st.form("sign_in"):
        name = st.text_input("User name", key="signin_user")
        password = st.text_input("Password", type="password", key="signin_password")
        if st.form_submit_button("Sign in"):
            if cfg.check(name, password):
                st.session_state["ser_user"] = name.strip()
                st.rerun()
            st.error("Wrong user name or password.")


def current_user() -> str | None:
    """Who saves to History (None: no sign-in configured)."""
    return st.session_state.get("ser_user") or (str(st.user.get("email") or st.user.get("name"))
                                                if getattr(st.user, "is_logged_in", False) else None)


def history_owner() -> str | None:
    """Whose History a page shows: the signed-in user's, or everyone's (no sign-in, or an admin)."""
    return None if st.session_state.get("ser_admin") else current_user()
