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
    demo with the Analyze page's default settings (transcript included), so that the first visitor's first screen (the
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
            from ser.transcription.asr import available

            analyze(load_audio(demo.read_bytes(), name=demo.name), model=model, name=demo.name,
                    transcribe=available())  # the page transcribes recordings up to 10 minutes by default
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
        message = plain(exc)  # the name `exc` is gone once the except block ends
        only_this(lambda: st.error(message), "Configuration error")
    reason = sign_in_required(st.get_option("server.address"), cfg)
    if reason:
        only_this(lambda: st.error(reason), "Sign-in required")
    st.session_state["ser_gate_enabled"] = cfg.enabled
    if not cfg.enabled:
        return None
    if cfg.users:
        if _served():
            from ser.serve.sessions import install

            if not install():  # fail closed: without the cookie route nobody could be told apart
                only_this(lambda: st.error(
                    "Sign-in is unavailable: this Streamlit server's routes are not the ones ser guards "
                    "(/media, uploads, metrics; see docs/privacy.md). Use the pinned Streamlit "
                    "(requirements.txt)."), "Sign-in unavailable")
        user = current_user()
        if not user:
            if st.session_state.get("ser_state_owner"):  # someone's state, reached without their browser
                _clear_state()
            _bind(None)
            only_this(lambda: _password_form(cfg))
    else:  # an OIDC provider through Streamlit's own st.login
        if not st.user.is_logged_in:
            only_this(lambda: (st.title("Sign in"), st.button("Sign in", on_click=st.login, key="signin_oidc")))
        user = str(st.user.get("email") or st.user.get("name") or "user")
    if st.session_state.get("ser_state_owner") not in (None, user):
        _clear_state()  # another user's session resumed with this browser's cookie: none of it shows
    st.session_state["ser_state_owner"] = user
    _bind(user, admin=user in cfg.admins)
    st.session_state["ser_admin"] = user in cfg.admins
    with st.sidebar:
        st.caption(f"Signed in as **{plain(user)}**" + (" (admin: sees everyone's History)" if user in cfg.admins else ""))
        if st.button("Sign out", key="signout"):
            sign_out()
            if not cfg.users:
                st.logout()
            st.rerun()
    return user


def sign_out() -> None:
    """End the signed-in session in this browser tab: the browser's sign-in cookie authenticates
    nobody from now on, every key of the session's state goes (the previous user's clips,
    players, uploads, selections), and a live scorer it held is closed, so the next user of the
    tab starts from nothing."""
    if _served():
        from ser.serve.sessions import REGISTRY

        REGISTRY.revoke(_token())
    _bind(None)
    _clear_state()


def _clear_state() -> None:
    import contextlib

    for key in list(st.session_state.keys()):
        value = st.session_state.get(key)
        scorer = getattr(value, "scorer", None)  # the Live page's stream
        if scorer is not None:
            with contextlib.suppress(Exception):
                scorer.close()
        del st.session_state[key]
    st.session_state["ser_gate_enabled"] = True  # until the next full run: fragments stay shut


def signed_in_or_open() -> bool:
    """For fragments, which rerun without app.py's gate: True when the dashboard needs no sign-in
    or this session is signed in. A fragment returns at once otherwise (a rerun of it sent after
    sign-out must show nothing)."""
    if not st.session_state.get("ser_gate_enabled"):
        return True
    user = current_user()
    return bool(user) and st.session_state.get("ser_state_owner") == user


def through_app() -> None:
    """The first call of every page: a page runs only inside app.py's navigation, behind its
    sign-in gate and with its sidebar. On a fresh server Streamlit still assumes its old
    multipage mode (there is a pages/ folder) until app.py has called st.navigation once, and
    runs the file that a first visitor's URL names (/history, /voices) directly — past the
    sign-in, with Streamlit's own page list. Such a run switches the server to app.py's
    navigation and starts again. (AppTest runs every switched-to page that way by design, and
    has no visitors: left alone there.)"""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and _served():
        PagesManager.uses_pages_directory = False
        st.rerun()


def only_this(body, title: str = "Sign in") -> None:
    """Show ``body`` and nothing else, whatever the URL: a navigation of one hidden page. (Stopping
    before st.navigation would let Streamlit list the pages/ folder, and open its pages directly.)"""
    st.navigation([st.Page(body, title=title, url_path="only", default=True)], position="hidden").run()
    st.stop()


@st.cache_resource(show_spinner=False)
def _throttle():
    """The server's one sign-in back-off (ser.serve.auth.Throttle): per name and per client."""
    from ser.serve.auth import Throttle

    return Throttle()


def _client() -> str | None:
    """The browser's address as the server sees it (a proxy's, behind one)."""
    return getattr(st.context, "ip_address", None)


def _password_form(cfg) -> None:
    st.title("Sign in")
    with st.form("sign_in"):
        name = st.text_input("User name", key="signin_user")
        password = st.text_input("Password", type="password", key="signin_password")
        if st.form_submit_button("Sign in"):
            throttle, client = _throttle(), _client()
            wait = throttle.wait_s(name, client)
            if wait > 0:  # refused before any hashing: guessing is slow and costs the server nothing
                st.error(f"Too many failed sign-ins: try again in {wait:.0f} s.")
                return
            if cfg.check(name, password):
                throttle.succeeded(name, client)
                if not _served():  # AppTest: no browser, no cookie; the session is the identity
                    st.session_state["ser_user"] = name.strip()
                    st.rerun()
                _trade_in_browser(name.strip(), cfg)
                return
            throttle.failed(name, client)
            st.error("Wrong user name or password.")


def plain(text: object) -> str:
    """``text`` as Streamlit shows it in Markdown elements (st.error, st.caption, st.subheader…),
    but literally. For anything a user supplied: file, speaker and voice names, and messages
    that quote them (an image link in a file name must not make a browser fetch it, nor a link
    in it look like the app's own). Escaped: the characters that start Markdown links, images,
    emphasis, code, headings, tables, HTML and Streamlit's directives (``:red[…]``,
    ``:material/…:``, ``$…$``), and the ``www.``/``://`` of bare links; control characters are
    dropped; line breaks stay breaks. Plain words, numbers and file names read the same."""
    import re

    s = str(text).replace("\r\n", "\n").replace("\r", "\n")
    s = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", s)  # control characters: nothing to show
    s = re.sub(r"([\\`*_\[\]<>!#~$|{}:])", r"\\\1", s)
    s = re.sub(r"(?i)\b(www)\.", r"\1\\.", s)
    return s.replace("\n", "  \n")


def current_user() -> str | None:
    """Who is signed in on the connection running this script (None: nobody, or no sign-in
    configured). Served, a password user is whoever the browser's HttpOnly cookie names
    (ser.serve.sessions) — never what the session's state says, which a client that names the
    session's ID would inherit. Under AppTest (no server, no browser) the session's state."""
    if _served():
        from ser.serve.sessions import REGISTRY

        user = REGISTRY.user(_token())
    else:
        user = st.session_state.get("ser_user")
    return user or (str(st.user.get("email") or st.user.get("name"))
                    if getattr(st.user, "is_logged_in", False) else None)


def _served() -> bool:
    """A real Streamlit server runs this script (AppTest's runtime is a stand-in)."""
    from streamlit.runtime import Runtime

    return Runtime.exists() and type(Runtime.instance()) is Runtime


def _token() -> str | None:
    from ser.serve.sessions import COOKIE

    try:
        return st.context.cookies.get(COOKIE)
    except Exception:  # no connection (a script run whose browser has gone)
        return None


def _bind(user: str | None, admin: bool = False) -> None:
    """Tell the server's registry whose this Streamlit session is (its media, its uploads)."""
    if not _served():
        return
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from ser.serve.sessions import REGISTRY

    ctx = get_script_run_ctx()
    if ctx is not None:
        REGISTRY.bind(ctx.session_id, user, admin=admin)


def _trade_in_browser(user: str, cfg) -> None:
    """The password was right: a one-time code, which this page's script trades at the server
    for an HttpOnly cookie, then reloads (a new session, signed in by the cookie)."""
    import json

    from ser.serve.sessions import REGISTRY, ROUTE

    code = REGISTRY.issue_code(user, admin=user in cfg.admins)
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    path = "/" + (base + "/" if base else "") + ROUTE
    st.info("Signing in… (if this stays, allow cookies for this site and sign in again)")
    st.html(f"""<script>
fetch(new URL({json.dumps(path)}, window.location.origin), {{method: "POST", body: {json.dumps(code)},
      credentials: "same-origin", cache: "no-store"}})
  .then(r => {{ if (r.ok) window.location.reload(); }});
</script>""", unsafe_allow_javascript=True)


def history_owner() -> str | None:
    """Whose History a page shows: the signed-in user's, or everyone's (no sign-in, or an admin)."""
    return None if st.session_state.get("ser_admin") else current_user()
