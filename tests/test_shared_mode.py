"""Shared mode against a hostile colleague (issue 33 items 1, 5, 6): a real `streamlit run` with
three password users, Debian's Chromium for the users, and raw websocket / HTTP clients for the
attacker, as the review attacked it.

- The first visitor of a fresh server, at a deep link (/history), gets the sign-in form.
- A session ID alone signs in nobody: alice's ID (from her upload URL) resumed over a raw
  websocket with no cookies shows the sign-in form, not her name, History or controls.
- The sign-in is an HttpOnly, SameSite=Strict cookie and a new Streamlit session; after
  sign-out that cookie signs in nobody.
- /media files only for the signed-in browser whose session holds them; uploads only into the
  uploader's own session; /_stcore/metrics only for an admin.
- A never-signed-in websocket's "clear_cache" clears nothing (the sign-in back-off survives it).
- "Already analysed on this server" only for one's own recording.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
USERS = {"alice": "wonderland", "bob": "builder", "root": "admin-pass"}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                                   reason="needs Debian's chromium (scripts/setup.sh installs it)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from screenshot import free_port

    from ser.serve.auth import hash_password

    tmp = tmp_path_factory.mktemp("shared")
    secrets = tmp / "secrets.toml"
    secrets.write_text("[ser_auth]\nadmins = [\"root\"]\n[ser_auth.users]\n" + "".join(
        f'{u} = "{hash_password(p, iterations=20_000)}"\n' for u, p in USERS.items()))
    port = free_port()
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
           "SER_HISTORY_DB": str(tmp / "shared-history.sqlite")}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--secrets.files", str(secrets)], cwd=ROOT, env=env, stdout=log, stderr=log)
    for _ in range(240):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def _get(url: str, cookies: dict | None = None) -> int:
    req = urllib.request.Request(url, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _raw_session(host: str, *, session_id: str = "", back_msgs=(), listen_s: float = 8.0,
                 cookies: dict | None = None) -> bytes:
    """A client with no browser and no cookies: opens the app's websocket (resuming
    ``session_id`` when given, as Streamlit's own reconnect does), asks for a run of the main
    page, sends ``back_msgs`` and returns every byte the server sent back."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from websockets.sync.client import connect

    got = b""
    with connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit", "x", session_id] if session_id
                 else ["streamlit"], open_timeout=30, max_size=None,
                 additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies
                 else None) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = ""
        for msg in (rerun, *back_msgs):
            ws.send(msg.SerializeToString())
        end = time.monotonic() + listen_s
        while time.monotonic() < end:
            try:
                got += ws.recv(timeout=max(0.1, end - time.monotonic()))
            except TimeoutError:
                break
    return got


def _session_ids(page) -> list[str]:
    """The Streamlit session IDs the server gives this page, in order (from its websocket frames)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ids: list[str] = []

    def frame(payload):
        if isinstance(payload, (bytes, bytearray)):
            msg = ForwardMsg()
            try:
                msg.ParseFromString(bytes(payload))
            except Exception:
                return
            if msg.WhichOneof("type") == "new_session" and msg.new_session.initialize.session_id:
                sid = msg.new_session.initialize.session_id
                if not ids or ids[-1] != sid:
                    ids.append(sid)

    page.on("websocket", lambda ws: ws.on("framereceived", frame))
    return ids


def _sign_in(browser, host: str, user: str, *, watch=None, ids: list | None = None):
    page = browser.new_context(viewport={"width": 1280, "height": 1200}).new_page()  # its own cookies
    if watch is not None:
        page.on("request", watch)
    if ids is not None:
        page_ids = _session_ids(page)
    page.goto(f"http://{host}", wait_until="networkidle")
    page.get_by_role("button", name="Sign in").wait_for(timeout=120_000)
    if ids is not None:
        ids.append(list(page_ids))  # before sign-in
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(USERS[user])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {user}").first.wait_for(timeout=120_000)
    if ids is not None:
        ids.append(list(page_ids))  # after
    return page


def _last_sign_in_message(page, name: str, password: str) -> str:
    page.get_by_label("User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    time.sleep(1.5)  # the rerun's error replaces the last one
    return " ".join(page.locator("[data-testid='stAlert']").all_inner_texts())


def _upload_and_wait(page, path) -> str:
    from screenshot import upload

    upload(page, path)
    page.get_by_text("Analysed").first.wait_for(timeout=300_000)
    for _ in range(60):  # the status of this upload, not the first screen's demo
        labels = [t for t in page.locator("[data-testid='stExpander'] summary, [data-testid='stStatusWidget']")
                  .all_inner_texts() if "Analysed" in t]
        if any("demo" not in t and ("already analysed" in t or " in " in t) for t in labels):
            break
        time.sleep(1)
    return " | ".join(page.get_by_text("Analysed").all_inner_texts())


def test_shared_mode_holds_against_a_colleague(server, tmp_path):
    from playwright.sync_api import sync_playwright
    from screenshot import CHROMIUM_ARGS

    from audiogen import speak, write

    clip = write(tmp_path / "alice-interview.wav", speak("I told you I would not come back here again.",
                                                          "en-us+m3"), 16000, "wav")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # before sign-in: the session the sign-in page runs in
        anon = browser.new_context().new_page()
        seen: list[str] = []
        anon.on("websocket", lambda ws: seen.append(ws.url))
        # the server's very first visitor, at a deep link: Streamlit's old multipage mode ran
        # pages/history.py directly (past the sign-in: everyone's History, Streamlit's page list)
        anon.goto(f"http://{server}/history", wait_until="networkidle")
        anon.get_by_role("button", name="Sign in").wait_for(timeout=120_000)
        time.sleep(2)
        assert anon.get_by_text("Stored:").count() == 0 and anon.get_by_text("History").count() == 0
        anon.goto(f"http://{server}", wait_until="networkidle")
        anon.get_by_role("button", name="Sign in").wait_for(timeout=120_000)

        sids: list[str] = []

        def watch(req):
            if "/_stcore/upload_file/" in req.url:
                sids.append(req.url.split("/_stcore/upload_file/")[1].split("/")[0])

        ids: list = []
        alice = _sign_in(browser, server, "alice", watch=watch, ids=ids)
        cookie = {c["name"]: c for c in alice.context.cookies()}["ser_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        before, after = ids
        assert before and after and after[-1] not in before, ids  # a new session at sign-in
        label = _upload_and_wait(alice, clip)
        assert sids, "no upload URL seen"
        alice_sid = sids[-1]
        # (5) the kept audio's player: alice's browser gets it; no cookie, bob's cookie: nothing
        alice.locator("audio[src*='/media/']").first.wait_for(state="attached", timeout=60_000)
        src = alice.locator("audio[src*='/media/']").first.get_attribute("src")
        assert src and "/media/" in src, src
        media = src if src.startswith("http") else f"http://{server}{src}"
        alice_cookies = {c["name"]: c["value"] for c in alice.context.cookies()}
        assert _get(media, alice_cookies) == 200
        assert _get(media) == 404

        bob = _sign_in(browser, server, "bob")
        bob_cookies = {c["name"]: c["value"] for c in bob.context.cookies()}
        assert _get(media, bob_cookies) == 404
        # an upload into alice's session from bob's browser: refused
        req = urllib.request.Request(f"http://{server}/_stcore/upload_file/{alice_sid}/x", data=b"--b--",
                                     method="PUT", headers={"Cookie": f"ser_session={bob_cookies['ser_session']}"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 404
        # (6) the same recording analysed by bob is not "already analysed on this server"
        bob_label = _upload_and_wait(bob, clip)
        assert "already analysed on this server" not in bob_label, bob_label
        # the Live page signed in: a quick clip's player is served to bob, and to nobody else
        bob.get_by_role("link", name="Live").first.click()
        bob.locator("input[type=file]").first.wait_for(state="attached", timeout=120_000)
        # (other bytes than alice's recording: Streamlit names media files by their content, and
        # alice's session rightly holds that one)
        own = write(tmp_path / "bob-clip.wav", speak("This is my own clip, not hers.", "en-us+f2"), 16000, "wav")
        bob.locator("input[type=file]").first.set_input_files(str(own))
        bob.locator(".ser-headline[data-result='clip-1']").first.wait_for(timeout=120_000)
        player = bob.locator("audio[src*='/media/']").first  # (the element can stand before its source)
        player.wait_for(state="attached", timeout=60_000)
        live_src = player.get_attribute("src")
        live_media = live_src if live_src.startswith("http") else f"http://{server}{live_src}"
        assert _get(live_media, bob_cookies) == 200 and _get(live_media) == 404
        assert _get(live_media, alice_cookies) == 404

        # (1) alice closes her tab; her session ID, resumed without her cookie, is nobody
        alice.context.close()
        time.sleep(1)
        got = _raw_session(server, session_id=alice_sid)
        assert b"User name" in got and b"alice" not in got and b"Signed in as" not in got, got[-400:]
        # the control: the same client with her cookie is her (so the attack above really ran the app)
        got = _raw_session(server, session_id=alice_sid, cookies={"ser_session": alice_cookies["ser_session"]})
        assert b"Signed in as" in got and b"alice" in got and b"User name" not in got, got[-400:]
        assert _get(media, alice_cookies) in (200, 404)  # (her files go with her session's state)

        # sign-out: the cookie bob still holds authenticates nobody, in the page or over a socket
        bob.get_by_role("button", name="Sign out").click()
        bob.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        bob.reload(wait_until="networkidle")
        bob.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
        assert bob.get_by_text("Signed in as").count() == 0
        got = _raw_session(server, cookies=bob_cookies)
        assert b"User name" in got and b"Signed in as" not in got, got[-400:]

        # (6) metrics only for an admin
        assert _get(f"http://{server}/_stcore/metrics") == 404
        assert _get(f"http://{server}/_stcore/metrics", bob_cookies) == 404
        root = _sign_in(browser, server, "root")
        assert _get(f"http://{server}/_stcore/metrics", {c["name"]: c["value"] for c in root.context.cookies()}) == 200

        # (6) "clear_cache" from a never-signed-in socket clears nothing: the sign-in back-off (in
        # st.cache_resource) survives it. Last: the back-off also holds this client's address.
        from streamlit.proto.BackMsg_pb2 import BackMsg

        guesser = browser.new_context().new_page()
        guesser.goto(f"http://{server}", wait_until="networkidle")
        guesser.get_by_role("button", name="Sign in").wait_for(timeout=120_000)
        wait = 0
        for _ in range(16):  # fail until the back-off is long enough to look at it
            said = _last_sign_in_message(guesser, "mallory", "guess")
            if "Too many failed sign-ins" in said:
                wait = int(said.split("try again in ")[1].split(" s")[0])
                if wait >= 12:  # room for the socket and the next attempt, however busy the machine
                    break
                time.sleep(wait + 0.3)
        assert wait >= 12, said
        clear = BackMsg()
        clear.clear_cache = True
        _raw_session(server, back_msgs=[clear], listen_s=1.0)
        assert "Too many failed sign-ins" in _last_sign_in_message(guesser, "mallory", "guess")
        browser.close()
    assert label  # alice's own first analysis ran
