"""AppTest: the Live page's quick clip classifies a recording or an upload, keeps the
session's clips with their exports, and shows errors for bad files while the page stays
usable. (Streaming needs a live Streamlit session manager that AppTest does not have;
tests/test_browser_live.py drives it in Chromium.)"""

from __future__ import annotations

import pytest
from audiogen import encode, tone


@pytest.fixture
def app(make_app):
    return make_app(timeout=60).switch_page("pages/live.py").run()


def headline(app) -> str:
    """The large top-emotion text of the Live page."""
    import re

    texts = [m.value for m in app.markdown if "ser-headline" in m.value]
    assert texts, "no headline on the page"
    return re.search(r"ser-headline[^>]*>([^<]+)<", texts[0]).group(1)


def offline(tiny_model_dir, data: bytes) -> dict:
    from ser.audio.decode import load_audio
    from ser.emotion.model import load_model

    m = load_model(tiny_model_dir, device="cpu")
    a = load_audio(data)
    return m.predict(a.y, a.sr)


def test_app_renders_with_the_default_model(app):
    assert not app.exception
    assert app.title[0].value == "Live"
    assert "Waiting for audio" in app.info[0].value


def test_recording_is_classified_with_the_models_answer(app, tiny_model_dir):
    data = encode(speech_like_tone(), 16_000, "wav")
    app.audio_input(key="live_record").upload("rec.wav", data, "audio/wav").run()
    assert not app.exception and not app.error
    want = offline(tiny_model_dir, data)
    assert headline(app) == ("uncertain" if want["uncertain"] else want["emotion"])
    shown = " ".join(m.value for m in app.markdown)
    top = max(want["probabilities"], key=want["probabilities"].get)
    assert f"{want['probabilities'][top]:.0%}" in shown  # the top probability is printed
    assert len(app.get("vega_lite_chart")) == 1  # the probability bars


def test_clips_pile_up_in_the_session_list_with_exports(app):
    for i, freq in enumerate((150.0, 220.0, 300.0)):
        data = encode(tone(1.5 + i * 0.5, 16_000, freq=freq), 16_000, "wav")
        app.audio_input(key="live_record").upload(f"rec{i}.wav", data, "audio/wav").run()
        assert not app.exception and not app.error
    app.run()  # a rerun does not add the same clip twice
    assert app.subheader[0].value == "This session's clips"
    table = app.dataframe[0].value
    assert list(table["clip"]) == ["#3", "#2", "#1"]  # newest first
    assert list(table["duration (s)"]) == [2.5, 2.0, 1.5]
    assert len(app.get("audio")) == 1 and app.selectbox(key="live_play").options == ["#3", "#2", "#1"]
    app.selectbox(key="live_play").set_value(1).run()  # play the first clip
    assert not app.exception
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels == ["Results (CSV)", "Clips + results (ZIP)"]


def test_the_clip_exports_hold_every_clip_and_its_probabilities():
    import csv
    import io
    import zipfile

    from ser.analysis.exports import clips_zip, rows_csv

    rows = [{"clip": 1, "emotion": "sad", "sad": 0.7}, {"clip": 2, "emotion": "angry", "sad": 0.1}]
    text = rows_csv(rows)
    assert list(csv.DictReader(io.StringIO(text))) == [{"clip": "1", "emotion": "sad", "sad": "0.7"},
                                                       {"clip": "2", "emotion": "angry", "sad": "0.1"}]
    z = zipfile.ZipFile(io.BytesIO(clips_zip([("clip01.wav", b"RIFF1"), ("clip02.wav", b"RIFF2")], text)))
    assert z.namelist() == ["clips.csv", "clip01.wav", "clip02.wav"] and z.read("clip02.wav") == b"RIFF2"
    assert rows_csv([]) == ""


def test_upload_is_classified(app):
    app.file_uploader(key="live_upload").upload("clip.m4a", encode(tone(2.0, 44_100), 44_100, "m4a"), "audio/mp4").run()
    assert not app.exception and not app.error
    assert headline(app) in {"uncertain", "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}
    assert "aac" in " ".join(c.value for c in app.caption)


@pytest.mark.parametrize("name,data,message", [
    ("empty.wav", b"", "empty"),
    ("notes.wav", b"hello " * 200, "could not be decoded"),
    ("silence.wav", encode(tone(1.0) * 0, 16_000, "wav"), "digital silence"),
    ("blip.wav", encode(tone(0.2), 16_000, "wav"), "at least 0.50 s"),
])
def test_bad_upload_shows_an_error_and_the_page_stays_usable(app, name, data, message):
    uploader = app.file_uploader(key="live_upload")
    uploader.upload(name, data, "audio/wav").run()
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    app.file_uploader(key="live_upload").set_value(("ok.wav", encode(tone(1.5), 16_000, "wav"), "audio/wav")).run()
    assert not app.exception and not app.error and headline(app)


def speech_like_tone():
    return tone(4.0, 16_000, freq=180.0)



def test_no_model_shows_the_reason_and_no_page(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setattr("ser.emotion.folder.MODELS_DIR", empty)
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "No model found" in at.error[0].value and not at.title  # no page ran


def test_signed_out_visitor_gets_only_the_sign_in(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    from ser.serve.auth import hash_password
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SER_HISTORY_DB", str(tmp_path / "h.sqlite"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["ser_auth"] = {"users": {"alice": hash_password("pw", iterations=1000)}}
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["Sign in"] and not at.sidebar.selectbox
    at.text_input(key="signin_user").input("alice")
    at.text_input(key="signin_password").input("pw")
    at.button[0].click().run()
    assert not at.exception and at.session_state["ser_user"] == "alice"
    assert at.title[0].value == "Analyze a recording" and at.sidebar.selectbox  # in, with the sidebar
