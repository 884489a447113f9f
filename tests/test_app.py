"""AppTest: the Live page's quick clip classifies a recording or an upload, keeps the
session's clips with their exports, and shows errors for bad files while the page stays
usable."""

from __future__ import annotations

import pytest

from audiogen import encode, tone


@pytest.fixture
def app(make_app):
    return make_app(timeout=60).switch_page("pages/live.py").run()


def test_app_renders_with_the_default_model(app):
    assert not app.exception
    assert app.title[0].value == "Speech emotion"
    assert "Waiting for audio" in app.info[0].value


def test_upload_is_classified(app):
    app.file_uploader(key="live_upload").upload("clip.m4a", encode(tone(2.0, 44_100), 44_100, "m4a"), "audio/mp4").run()
    assert not app.exception and not app.error
    metric = app.metric[0]
    assert metric.label == "Emotion" and metric.value.split()[-1].strip("()") in {
        "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}
    assert "aac" in app.caption[-2].value or "aac" in " ".join(c.value for c in app.caption)


def test_recording_is_classified(app):
    app.audio_input(key="live_record").upload("rec.wav", encode(tone(1.5, 16_000), 16_000, "wav"), "audio/wav").run()
    assert not app.exception and not app.error and app.metric[0].label == "Emotion"


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
    assert not app.exception and not app.error and app.metric[0].label == "Emotion"
