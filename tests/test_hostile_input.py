"""Hostile names and guessing: a user-supplied name is shown as text, never as Markdown (no image
fetched, no link that looks like the app's own), and sign-in neither tells which names exist by
its timing nor lets anyone guess for free."""

from __future__ import annotations

import re
import time

import pytest
from audiogen import encode, tone

HOSTILE = "![q](http://host/px.png) [Session expired - sign in again](http://evil/) :red[x] <b>b</b> www.evil.com"


def _unescaped(markdown: str) -> list[str]:
    """Markdown constructs in ``markdown`` that a renderer would act on."""
    found = []
    for pattern in (r"(?<!\\)!(?<!\\)\[", r"(?<!\\)\]\(", r"(?<!\\)<b", r"(?<!\\):red(?<!\\)\[", r"(?<!\\)www\.(?!\\)",
                    r"(?<!\\)http://"):
        found += re.findall(pattern, markdown)
    return found


def test_plain_escapes_every_construct_and_keeps_ordinary_text():
    from pages import plain

    assert _unescaped(HOSTILE)  # the check can fail
    assert not _unescaped(plain(HOSTILE)), plain(HOSTILE)
    assert plain("meeting 2.5 (take 1).wav needs at least 0.50 s") == "meeting 2.5 (take 1).wav needs at least 0.50 s"
    assert plain("a\x00b\x1bc\nd") == "abc  \nd"


@pytest.fixture
def page(make_app):
    return make_app().switch_page("pages/analyze.py").run()


def test_a_hostile_file_name_in_an_error_is_shown_as_text(page):
    page.radio(key="analyze_source").set_value("Upload").run()
    page.file_uploader(key="analyze_upload").upload(HOSTILE + ".wav", b"not audio " * 50, "audio/wav").run()
    assert not page.exception
    errors = [e.value for e in page.error]
    assert errors and any("Session expired" in e for e in errors), errors
    assert not any(_unescaped(e) for e in errors), errors


def test_the_live_quick_clip_shows_a_hostile_name_as_text(make_app):
    app = make_app(timeout=60).switch_page("pages/live.py").run()
    app.file_uploader(key="live_upload").upload(HOSTILE + ".wav", encode(tone(0.2), 16_000, "wav"), "audio/wav").run()
    errors = [e.value for e in app.error]
    assert errors and not any(_unescaped(e) for e in errors), errors


def test_an_unknown_name_costs_what_a_known_one_costs():
    from ser.serve.auth import AuthConfig, hash_password

    cfg = AuthConfig(users={"alice": hash_password("right", iterations=200_000)})
    cfg.check("mallory", "x")  # the dummy hash is made once, before timing

    times: dict[str, list[float]] = {"alice": [], "mallory": []}
    for _ in range(7):  # interleaved, so a busy moment of the machine hits both
        for name in times:
            t0 = time.perf_counter()
            assert not cfg.check(name, "wrong")
            times[name].append(time.perf_counter() - t0)
    known, unknown = (sorted(times[n])[3] for n in ("alice", "mallory"))
    # before the fix an unknown name cost 1 iteration against 200 000: a ratio near 0
    assert 0.4 < unknown / known < 2.5, (known, unknown)


def test_failed_sign_ins_back_off_per_name_and_per_client():
    from ser.serve.auth import Throttle

    now = [0.0]
    t = Throttle(free=3, base_s=1.0, max_s=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait_s("alice", "10.0.0.1") == 0
        t.failed("alice", "10.0.0.1")
    assert t.wait_s("alice", "10.0.0.1") == pytest.approx(1.0)  # the 4th try waits
    assert t.wait_s("alice", "10.0.0.2") == pytest.approx(1.0)  # per name: another address waits too
    assert t.wait_s("bob", "10.0.0.1") == pytest.approx(1.0)  # per client: another name waits too
    assert t.wait_s("bob", "10.0.0.2") == 0
    now[0] = 1.5
    t.failed("alice", "10.0.0.1")
    assert t.wait_s("alice", "10.0.0.1") == pytest.approx(2.0)  # doubles
    for _ in range(20):
        t.failed("mallory", "10.0.0.9")  # unknown names count the same
    assert t.wait_s("mallory", None) == pytest.approx(60.0)  # capped
    t.succeeded("alice", "10.0.0.1")
    assert t.wait_s("alice", "10.0.0.1") == 0


def _analysis(name: str, speakers: list[str]):
    from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn

    labels = ["neutral", "happy"]
    turns = [SpeakerTurn(1.0 + 2 * i, 2.5 + 2 * i, spk) for i, spk in enumerate(speakers)]
    segs = [EmotionSegment(t.start_s, t.end_s, t.speaker, "happy", {"neutral": 0.3, "happy": 0.7}, False, "turn")
            for t in turns]
    return Analysis(name=name, duration_s=10.0, labels=labels, turns=turns, segments=segs, windows=[],
                    provenance={"audio": {"sha256": "0" * 64}})


def test_hostile_names_cannot_forge_records_or_formulas_in_exports(tmp_path):
    import csv

    from pyannote.database.util import load_rttm

    from ser.analysis.exports import export, rows_csv

    evil_file = "talk\nSPEAKER forged 1 0.000 9.000 <NA> <NA> ghost <NA> <NA>"
    a = _analysis(evil_file, ["=HYPERLINK(\"http://evil\")", "bob\nSPEAKER x 1 0 1 <NA> <NA> ghost2 <NA> <NA>"])
    paths = export(a, tmp_path, ["csv", "rttm", "textgrid", "eaf", "audacity"], stem="t")
    rttm = load_rttm(str(paths["rttm"]))
    assert len(rttm) == 1  # one recording, not a forged second one
    (ann,) = rttm.values()
    assert len(list(ann.itertracks())) == 2 and not {"ghost", "ghost2"} & set(ann.labels()), ann.labels()
    assert "bob_SPEAKER_x_1_0_1_<NA>_<NA>_ghost2_<NA>_<NA>" in ann.labels()  # one name, kept whole
    rows = list(csv.reader(paths["csv"].open(encoding="utf-8")))
    assert rows[1][3].startswith("'=HYPERLINK") and len(rows) == 3
    for fmt in ("textgrid", "eaf", "audacity"):
        text = paths[fmt].read_text(encoding="utf-8")
        assert "\nSPEAKER x" not in text, fmt
    assert rows_csv([{"name": "@SUM(1+1)", "p": 0.5, "t": "-0.25"}]).splitlines()[1] == "'@SUM(1+1),0.5,-0.25"


def test_a_link_out_of_an_input_folder_is_refused_clearly(tmp_path):
    import subprocess
    import sys

    secret = tmp_path / "elsewhere" / "private.wav"
    secret.parent.mkdir()
    secret.write_bytes(encode(tone(2.0), 16_000, "wav"))
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "ok.wav").write_bytes(encode(tone(2.0), 16_000, "wav"))
    (folder / "innocent.wav").symlink_to(secret)
    r = subprocess.run([sys.executable, "-m", "ser.cli", "analyze", str(folder), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "links to files outside" in r.stderr and "innocent.wav" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("innocent*"))


def test_the_history_database_is_private_to_its_owner(tmp_path):
    import stat

    from ser.serve.history import History

    h = History(tmp_path / "new" / "history.sqlite")
    h.save(_analysis("a.wav", ["A"]), {"model": "m"}, audio=b"RIFF....", audio_name="a.wav")
    assert stat.S_IMODE(h.path.parent.stat().st_mode) == 0o700
    for p in h.path.parent.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def _signed_in_app(tmp_path, monkeypatch, users: dict[str, str]):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    from ser.serve.auth import hash_password

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SER_HISTORY_DB", str(tmp_path / "h.sqlite"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["ser_auth"] = {"users": {u: hash_password(p, iterations=1000) for u, p in users.items()}}
    return at.run()


def _sign_in(at, user: str, password: str):
    at.text_input(key="signin_user").input(user)
    at.text_input(key="signin_password").input(password)
    return at.button[0].click().run()


def test_sign_out_leaves_nothing_of_the_previous_user():
    """pages.sign_out in a real script run: every key of the session goes, a live scorer the
    session held is closed, and the Live page's fragments see a signed-out session."""
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from pages import sign_out, signed_in_or_open

        class Stream:  # what the Live page keeps: a stream holding a scorer
            closed = False

            def __init__(self):
                self.scorer = self

            def close(self):
                Stream.closed = True

        if "ser_user" not in st.session_state and not st.session_state.get("done"):
            st.session_state.update(ser_user="alice", ser_state_owner="alice", ser_gate_enabled=True,
                                    live_clips=["alice-secret.wav"],
                                    live_stream=Stream(), analyze_source="Upload")
            before = signed_in_or_open()
            sign_out()
            st.session_state["done"] = True
            st.write(f"before={before} after={signed_in_or_open()} closed={Stream.closed} "
                     f"keys={sorted(k for k in st.session_state.keys())}")

    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception
    assert at.markdown[0].value == "before=True after=False closed=True keys=['done', 'ser_gate_enabled']"


def test_wrong_passwords_are_slowed_down_and_then_refused_without_hashing(tmp_path, monkeypatch):
    at = _signed_in_app(tmp_path, monkeypatch, {"carol": "c"})  # the server's back-off is shared: her own name
    for _ in range(3):
        at = _sign_in(at, "carol", "wrong")
        assert any("Wrong user name or password" in e.value for e in at.error)
    at = _sign_in(at, "carol", "c")  # the right password, but inside the back-off: refused
    assert any("Too many failed sign-ins" in e.value for e in at.error) and "ser_user" not in at.session_state


def test_a_decoder_failure_names_the_problem_not_python_internals(monkeypatch):
    """Issue 33 item 9: a stream PyAV half-understands made the 400 read "decoder said: 'AudioStream'
    object has no attribute 'rate'". A Python error inside a decoder is not quoted; a decoder's own
    message still is."""
    from ser.audio import decode
    from ser.errors import AudioError

    def sf_fails(*a, **k):
        raise RuntimeError("Error opening <_io.BytesIO>: Format not recognised.")

    def av_half_understands(*a, **k):
        raise AttributeError("'AudioStream' object has no attribute 'rate'")

    monkeypatch.setattr(decode, "_decode_soundfile", sf_fails)
    monkeypatch.setattr(decode, "_decode_pyav", av_half_understands)
    with pytest.raises(AudioError) as err:
        decode.load_audio(b"\x1a\x45\xdf\xa3" + bytes(2000), name="odd.mkv")
    msg = str(err.value)
    assert "odd.mkv could not be decoded" in msg and "Supported formats" in msg
    assert "AudioStream" not in msg and "attribute" not in msg
    assert "Format not recognised" in msg  # libsndfile's own words are kept

    def sf_internal(*a, **k):
        raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'int'")

    monkeypatch.setattr(decode, "_decode_soundfile", sf_internal)
    with pytest.raises(AudioError) as err:
        decode.load_audio(b"\x1a\x45\xdf\xa3" + bytes(2000), name="odd.mkv")
    assert "decoder said" not in str(err.value) and "NoneType" not in str(err.value)
