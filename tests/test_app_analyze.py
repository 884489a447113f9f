"""AppTest of the Analyze page: demo, upload and bad files, with a small model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiogen import encode, speak, tone

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def page(make_app):
    return make_app()


def test_analyze_is_the_default_page_and_opens_on_the_analysed_emotion_demo(page):
    assert not page.exception and not page.error
    assert page.title[0].value == "Analyze a recording"
    assert page.sidebar.selectbox[0].value == "default"  # app.py's shared sidebar
    assert page.radio(key="analyze_source").value == "Emotion demo"
    assert "in the bundled model's training data" in page.info[0].value and "Upload" in page.info[0].value
    assert len(page.get("plotly_chart")) == 2  # the view and the speakers' emotion mix  # drawn without a click
    turns = page.dataframe(key="analyze_table").value
    assert "intended" in turns.columns and set(turns["intended"]) <= {"neutral", "happy", "angry", "sad", "fearful",
                                                                      "surprised", "disgust", ""}
    page.radio(key="analyze_source").set_value("Upload").run()
    assert "Upload a recording" in page.info[0].value


def test_demo_dialogue_gives_the_full_view(page):
    page.radio(key="analyze_source").set_value("Dialogue demo").run()
    assert not page.exception and not page.error
    chart = page.get("plotly_chart")
    assert len(chart) == 2  # the view and the speakers' emotion mix
    import json
    fig = json.loads(chart[0].proto.spec)
    kinds = [t["type"] for t in fig["data"]]
    assert "bar" in kinds and kinds.count("scatter") >= 2  # waveform, F0
    images = fig["layout"]["images"]  # the mel spectrogram, one PNG
    assert len(images) == 1 and images[0]["source"].startswith("data:image/png;base64,")
    titles = [a["text"] for a in fig["layout"]["annotations"]][:4]
    assert titles[:3] == ["Waveform", "Mel spectrogram", "Speakers"] and titles[3].startswith("Emotion per speaker")
    emotion_rows = [t for t in fig["data"] if t["type"] == "bar" and t.get("legendgroup") not in (None, "")
                    and t["name"] not in ("SPEAKER_00", "SPEAKER_01", "transcript")]
    assert emotion_rows and {r for t in emotion_rows for r in t["y"]} <= {"SPEAKER_00", "SPEAKER_01"}
    assert {t["name"] for t in emotion_rows} <= {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                                                 "surprised"}
    bars = {t["name"] for t in fig["data"] if t["type"] == "bar"} - {t["name"] for t in emotion_rows}
    assert bars == {"SPEAKER_00", "SPEAKER_01", "transcript"}  # the demo's two voices, and what they said
    speakers = bars - {"transcript"}
    turns = page.dataframe(key="analyze_table").value
    # six lines in the script; CAM++ hears espeak's two synthetic voices as alike, so some lines split
    assert len(turns) >= 6 and set(turns["speaker"]) == speakers
    # the transcript: text beside each turn, a line table with search, a selected line plays
    assert "grant" in " ".join(turns["text"]) and "Transcript" in [h.value for h in page.subheader]
    lines = page.dataframe(key="analyze_transcript_table").value
    assert len(lines) >= 6 and set(lines["speaker"]) == speakers and lines["emotion"].notna().all()
    page.text_input(key="analyze_find").set_value("GRANT").run()
    found = page.dataframe(key="analyze_transcript_table").value
    assert len(found) == 1 and "grant" in found["text"][0]
    page.text_input(key="analyze_find").set_value("zebra").run()
    assert "No line contains that text." in [i.value for i in page.info]
    page.text_input(key="analyze_find").set_value("").run()
    assert [b.label for b in page.get("download_button")][-2:] == ["SRT", "VTT"]
    # changing the speaker count re-clusters only; the page stays whole
    page.radio(key="analyze_mode").set_value("exact").run()
    page.number_input(key="analyze_n").set_value(1).run()
    assert not page.exception
    assert set(page.dataframe(key="analyze_table").value["speaker"]) == {"SPEAKER_00"}
    # a coarser label set relabels the columns
    page.selectbox(key="analyze_labels").set_value("valence: positive / neutral / negative").run()
    assert {"positive", "neutral", "negative"} <= set(page.dataframe(key="analyze_table").value.columns)


def test_upload_of_speech(page):
    y = np.concatenate([speak("This is the first voice speaking for a while.", "en-us+m1", pitch=30),
                        np.zeros(12000, np.float32),
                        speak("And here another voice answers the question.", "en-gb+f3", pitch=70)])
    page.radio(key="analyze_source").set_value("Upload").run()
    page.file_uploader(key="analyze_upload").upload("talk.flac", encode(y, 16000, "flac"), "audio/flac").run()
    assert not page.exception and not page.error
    assert len(page.dataframe(key="analyze_table").value) >= 2


def _nan_wav():
    y = tone(1.0)
    y[100], y[200] = np.nan, np.inf
    return encode(y, 16_000, "wav", subtype="FLOAT")


def _cut(fmt):
    data = encode(tone(2.0), 16_000, fmt)
    return data[: len(data) // 2]


# every rejection of the audio door that an upload can trigger (tests/test_audio.py)
BAD_UPLOADS = [
    ("empty.wav", b"", "empty"),
    ("notes.wav", b"hello " * 200, "could not be decoded"),
    # the uploader only accepts audio extensions (Streamlit checks them); a renamed image gets past that
    ("photo.wav", b"\x89PNG\r\n\x1a\n" + bytes(1000), "photo.wav"),
    ("junk.wav", np.random.default_rng(0).bytes(4000), "could not be decoded"),
    ("cut.wav", _cut("wav"), "truncated"),
    ("cut.flac", _cut("flac"), "cut.flac"),
    ("cut.mp3", _cut("mp3"), "cut.mp3"),
    ("cut.webm", _cut("webm"), "cut.webm"),
    ("header.wav", encode(tone(1.0), 16_000, "wav")[:44], "header.wav"),
    ("nan.wav", _nan_wav(), "invalid samples"),
    ("blip.wav", encode(tone(0.2), 16_000, "wav"), "at least 0.50 s"),
    ("silence.wav", encode(tone(1.0) * 0, 16_000, "wav"), "digital silence"),
    ("low.wav", encode(tone(1.0, 4_000), 4_000, "wav"), "4000 Hz"),
]


@pytest.mark.parametrize("name,data,message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_bad_upload_shows_an_error_and_the_page_stays_usable(page, name, data, message):
    page.radio(key="analyze_source").set_value("Upload").run()
    page.file_uploader(key="analyze_upload").upload(name, data, "audio/wav").run()
    assert not page.exception
    assert any(message in e.value for e in page.error), [e.value for e in page.error]
    page.radio(key="analyze_source").set_value("Dialogue demo").run()
    assert not page.exception and not page.error and len(page.get("plotly_chart")) == 2  # the view and the speakers' emotion mix


def test_noise_only_says_no_speech(page):
    rng = np.random.default_rng(0)
    page.radio(key="analyze_source").set_value("Upload").run()
    page.file_uploader(key="analyze_upload").upload(
        "room.wav", encode((0.002 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000, "wav"), "audio/wav").run()
    assert not page.exception and not page.error
    assert any("No speech found" in w.value for w in page.warning)


def test_models_page_shows_the_card_and_figures(make_app, tiny_model_dir, tmp_path):
    """The shipped default model's card (real CV figures) next to the tiny test model."""
    at = make_app({"default": ROOT / "models" / "default", "tiny": tiny_model_dir})
    models = tmp_path / "models"
    at.switch_page("pages/models.py").run()
    assert not at.exception and not at.error
    assert at.title[0].value == "Models"
    labels = [m.label for m in at.metric]
    # first what to expect on a new recording (the unseen-corpus range, chance, the human line), then the rest
    assert labels == ["UAR on a corpus it never saw", "Chance on those classes", "Human raters (ravdess)",
                      "UAR, pooled CV (all its corpora)", "Accuracy", "Macro-F1", "ECE after calibration"]
    card = json.loads((models / "default" / "card.json").read_text())
    loco_uars = [v["uar"] for v in card["metrics"]["leave_one_corpus_out"]["per_corpus"].values()]
    assert at.metric[0].value == f"{min(loco_uars):.2f}–{max(loco_uars):.2f}"
    assert at.metric[3].value == f"{card['metrics']['uar']['mean']:.3f}"
    cal = card["metrics"]["calibration"]
    assert at.metric[6].proto.delta.startswith("-") == (cal["ece_after"] < cal["ece_before"])  # the right direction
    # the per-corpus trust table: both protocols with chance beside them, RAVDESS's human line
    table = at.dataframe[0].value
    rows = {r["Corpus"]: r for r in table.to_dict("records")}
    assert set(rows) == {"ravdess", "ased", "emodb"}
    loco = card["metrics"]["leave_one_corpus_out"]["per_corpus"]
    assert rows["ased"]["UAR, corpus never seen"] == f"{loco['ased']['uar']:.2f}"
    assert rows["ased"]["chance (LOCO)"] == "0.20 (5 classes)"
    assert rows["ravdess"]["Human raters"] == "0.67"
    assert rows["emodb"]["Human raters"] == "—"  # no human figure: said, not "None"
    assert len(at.get("image")) == 2  # confusion matrix and reliability diagram
    assert any("ser train" in c.value for c in at.code)
    # the diarizer: its two networks with their licences, and its measured DER per set from its card
    dcard = json.loads((ROOT / "models" / "diarization" / "card.json").read_text())
    nets = at.dataframe[1].value.to_dict("records")
    assert [n["Network"] for n in nets] == ["campplus", "segmentation"] and "Apache-2.0" in nets[0]["Licence"]
    der = {r["Set"]: r for r in at.dataframe[2].value.to_dict("records")}
    real = next(r for k, r in der.items() if k.startswith("Real"))
    assert real["DER"] == f"{dcard['metrics']['sets']['real']['der']:.3f}" and real["Recordings"] == 6
    assert any(k.startswith("Simulated") for k in der)
    at.selectbox(key="models_pick").set_value("tiny").run()
    assert not at.exception and not at.metric  # an untrained model has no CV figures to show
    at.button(key="models_activate").click().run()
    assert at.session_state["model_choice"] == "tiny"


def test_history_page_reopens_and_deletes(page):
    page.radio(key="analyze_source").set_value("Dialogue demo").run()
    assert not page.exception
    page.switch_page("pages/history.py").run()
    assert not page.exception and page.title[0].value == "History"
    table = page.dataframe(key="history_table").value
    assert len(table) == 1 and table["name"][0] == "demo_dialogue.wav" and not table["audio kept"][0]
    # searchable by what was said
    page.text_input(key="history_find").set_value("Friday").run()
    hits = next(d.value for d in page.dataframe if "text" in d.value.columns)  # (a plain table has no key)
    assert len(hits) == 1 and "Friday" in hits["text"][0] and len(page.dataframe(key="history_table").value) == 1
    page.text_input(key="history_find").set_value("zebra").run()
    assert not page.exception and not [d for d in page.dataframe if d.key == "history_table"]
    # reopened without its audio: the chart from the stored analysis, and why there is no waveform
    page.text_input(key="history_find").set_value("").run()
    page.session_state["history_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    page.run()
    assert not page.exception and any("was not kept" in c.value for c in page.caption)
    spec = json.loads(page.get("plotly_chart")[0].proto.spec)
    assert {"SPEAKER_00", "SPEAKER_01"} <= {t["name"] for t in spec["data"] if t["type"] == "bar"}
    assert any("audio not kept" in a_["text"] for a_ in spec["layout"]["annotations"])
    # two selected: compared side by side, each with its chart
    import os

    from ser.serve.history import History

    hist = History(os.environ["SER_HISTORY_DB"])
    a, settings, _ = hist.get(hist.list()[0].id)
    hist.save(a, {**settings, "window_s": 1.5}, audio=None, audio_name=None)
    page.session_state["history_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    page.run()
    assert not page.exception and "Compare" in [h.value for h in page.subheader]
    assert len(page.get("plotly_chart")) == 2


def test_datasets_page_explores_a_corpus_and_reveals(page, tmp_path):
    root = tmp_path / "rav"
    for actor in (1, 2):
        d = root / f"Actor_{actor:02d}"
        d.mkdir(parents=True)
        for emo in ("01", "05"):
            y = np.concatenate([np.zeros(8000, np.float32), tone(1.0, freq=150 + 40 * actor), np.zeros(8000, np.float32)])
            (d / f"03-01-{emo}-01-01-01-{actor:02d}.wav").write_bytes(encode(y, 16000, "wav"))
    page.switch_page("pages/datasets.py").run()
    page.text_input(key="datasets_folder").set_value(str(root)).run()
    page.selectbox(key="datasets_corpus").set_value("ravdess").run()
    assert not page.exception and not page.error
    assert [m.value for m in page.metric][:2] == ["4", "2"]
    durations = next(d.value for d in page.dataframe if "before trimming" in d.value.index)
    assert durations.loc["before trimming", "mean"] == pytest.approx(2.0, abs=0.01)
    assert durations.loc["after trimming", "mean"] < 1.5  # the silence is trimmed
    page.button(key="datasets_reveal").click().run()
    assert not page.exception and any("Intended emotion" in m.value for m in page.markdown)
    page.radio(key="datasets_guess").set_value(page.radio(key="datasets_guess").options[0]).run()
    assert page.radio(key="datasets_guess").value is not None
    page.button(key="datasets_next").click().run()  # a new clip starts with no guess and nothing revealed
    assert not page.exception and page.radio(key="datasets_guess").value is None
    assert not any("Intended emotion" in m.value for m in page.markdown)
    page.text_input(key="datasets_folder").set_value(str(tmp_path / "nothing")).run()
    assert not page.exception and page.error


def test_history_page_shows_what_is_stored_exports_and_deletes_all(page, tmp_path):
    import io
    import os
    import zipfile

    from ser.serve.history import History

    page.radio(key="analyze_source").set_value("Dialogue demo").run()
    page.switch_page("pages/history.py").run()
    assert not page.exception
    hist = History(os.environ["SER_HISTORY_DB"])
    assert len(hist.list()) == 1
    label = next(e.label for e in page.expander if e.label.startswith("Stored"))
    assert "1 analysis, 0 with audio" in label
    assert any(str(hist.path) in m.value for m in page.markdown)
    z = zipfile.ZipFile(io.BytesIO(hist.export_all()))
    assert [n.endswith(".json") for n in z.namelist()] == [True]
    # Export all is packed on request, then offered as bytes this session holds (a deferred
    # download is a file no session holds, which shared mode's media guard refuses)
    assert not any(b.label.startswith("Export all") for b in page.get("download_button"))
    page.button(key="history_export_prepare").click().run()
    assert [b.label for b in page.get("download_button") if b.label.startswith("Export all")] == [
        f"Export all (ZIP, {len(hist.export_all()) / 1024 / 1024:.1f} MB)"]
    assert page.button(key="history_delete_all").disabled  # not without the confirmation
    page.checkbox(key="history_delete_all_confirm").check().run()
    page.button(key="history_delete_all").click().run()
    assert not page.exception
    assert hist.list() == [] and any("Nothing saved yet" in i.value for i in page.info)


def test_a_range_redraws_at_full_resolution_plays_and_exports_just_that_range(page):
    """The range slider (what a box dragged on the chart sets): the chart shows that stretch, the
    player plays it, and the range downloads hold a WAV of exactly it and the turns inside it."""


    page.radio(key="analyze_source").set_value("Dialogue demo").run()
    full = json.loads(page.get("plotly_chart")[0].proto.spec)
    assert not any(b.label.startswith("Range") for b in page.get("download_button"))
    page.slider(key="analyze_range").set_value((5.0, 12.0)).run()
    assert not page.exception and not page.error
    fig = json.loads(page.get("plotly_chart")[0].proto.spec)
    assert fig["layout"]["xaxis"]["range"] == [5.0, 12.0] and full["layout"]["xaxis"]["range"][0] == 0.0
    assert any("Playing the selected range, 5.0–12.0 s" in c.value for c in page.caption)
    audio = page.get("audio")[0].proto
    assert audio.start_time == 5 and audio.end_time == 12
    labels = [b.label for b in page.get("download_button")]
    assert {"Range WAV", "Range CSV", "Range TextGrid", "Range JSON"} <= set(labels)
    page.button(key="analyze_range_reset").click().run()
    assert tuple(page.slider(key="analyze_range").value)[0] == 0.0


def test_range_crop_and_clip_match(tmp_path):
    from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn

    probs = {"a": 0.7, "b": 0.3}
    a = Analysis(name="x", duration_s=10.0, labels=["a", "b"],
                 turns=[SpeakerTurn(0.5, 3.0, "S0"), SpeakerTurn(3.5, 6.0, "S1"), SpeakerTurn(7.0, 9.0, "S0")],
                 segments=[EmotionSegment(0.5, 3.0, "S0", "a", probs), EmotionSegment(3.5, 6.0, "S1", "a", probs)])
    c = a.crop(2.0, 5.0)
    assert c.duration_s == 3.0 and c.provenance["range_s"] == [2.0, 5.0]
    assert [(t.start_s, t.end_s, t.speaker) for t in c.turns] == [(0.0, 1.0, "S0"), (1.5, 3.0, "S1")]
    assert len(c.segments) == 2
    with pytest.raises(ValueError):
        a.crop(5.0, 5.0)


def test_view_payload_does_not_grow_with_the_number_of_turns():
    """Many short turns (a long meeting): one trace per speaker, labels only where they fit, at most
    600 emotion points; a range shows every window of it."""
    from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn
    from ser.analysis.figures import analysis_figure, figure_payload_bytes

    labels = ["neutral", "happy", "sad"]
    rng = np.random.default_rng(0)

    def fake(n_turns: int, dur: float) -> Analysis:
        edges = np.sort(rng.uniform(0, dur, 2 * n_turns)).reshape(-1, 2)
        turns = [SpeakerTurn(float(a_), float(b_), f"S{i % 3}") for i, (a_, b_) in enumerate(edges)]
        segs = [EmotionSegment(t.start_s, t.end_s, t.speaker, "happy", dict(zip(labels, rng.dirichlet([1, 1, 1]))))
                for t in turns]
        wins = [EmotionSegment(t.start_s, t.end_s, t.speaker, "happy", s.probabilities, kind="window")
                for t, s in zip(turns, segs)]
        return Analysis("m", dur, labels, turns, segs, wins)

    y = (0.01 * rng.standard_normal(16_000 * 600)).astype(np.float32)
    few, many = fake(50, 600.0), fake(3000, 600.0)
    f_few = analysis_figure(y, 16_000, few)
    f_many = analysis_figure(y, 16_000, many)
    assert figure_payload_bytes(f_many) < 1.3 * figure_payload_bytes(f_few) + 150_000
    lanes = [t for t in f_many.data if t.type == "bar" and t.xaxis == "x3" and t.name in ("S0", "S1", "S2")]
    assert len(lanes) == 3  # one per speaker
    emotion_bars = [t for t in f_many.data if t.type == "bar" and t.legendgroup in labels]
    assert len(emotion_bars) <= 3 * len(labels) and sum(len(t.x) for t in emotion_bars) <= 3 * 600  # bins, not turns
    area = analysis_figure(y, 16_000, many, overlay="area")
    emo = [t for t in area.data if t.type == "scatter" and t.stackgroup == "emo"]
    assert all(len(t.x) <= 600 for t in emo)
    notes = [a_ for a_ in f_many.layout.annotations if a_.text in ("happy", "happy?")]
    assert len(notes) <= 200
    zoom = analysis_figure(y, 16_000, many, t0=100.0, t1=110.0, overlay="area")
    xs = [t for t in zoom.data if t.type == "scatter" and t.stackgroup == "emo"][0].x
    assert 100.0 <= min(xs) and max(xs) <= 110.0 and len(xs) == 500  # 20-ms bins: every window at full resolution
    assert list(zoom.layout.xaxis.range) == [100.0, 110.0]


def test_emotion_is_drawn_only_where_somebody_speaks_and_overlap_stays_two_speakers():
    """Issue 32: the emotion area joined window centres across silence (disgust drifting to calm
    over 24-27 s of nobody speaking) and blended overlapping speakers; the strip showed two of eight
    rows. Here S0 speaks 0-5 s (angry) and 14-18 s, S1 12-20 s (sad), nobody 5-12 s."""
    from ser.analysis.emotion_panel import emotion_grid
    from ser.analysis.figures import analysis_figure
    from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn

    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]

    def probs(top):
        return {k: (0.65 if k == top else 0.05) for k in labels}

    def windows(spk, a_, b_, top):
        out, t = [], a_
        while t + 2.0 <= b_ + 1e-9:
            out.append(EmotionSegment(t, t + 2.0, spk, top, probs(top), kind="window"))
            t += 0.5
        return out

    turns = [SpeakerTurn(0.0, 5.0, "S0"), SpeakerTurn(12.0, 20.0, "S1"), SpeakerTurn(14.0, 18.0, "S0")]
    wins = windows("S0", 0.0, 5.0, "angry") + windows("S1", 12.0, 20.0, "sad") + windows("S0", 14.0, 18.0, "angry")
    segs = [EmotionSegment(t.start_s, t.end_s, t.speaker, "angry" if t.speaker == "S0" else "sad",
                           probs("angry" if t.speaker == "S0" else "sad")) for t in turns]
    a = Analysis("m", 20.0, labels, turns, segs, wins)
    y = (0.01 * np.random.default_rng(0).standard_normal(16_000 * 20)).astype(np.float32)

    edges, P = emotion_grid(wins, labels, 0.0, 20.0)
    centres = (edges[:-1] + edges[1:]) / 2
    assert np.isnan(P[(centres > 5.0) & (centres < 12.0)]).all() and not np.isnan(P[centres < 5.0]).any()
    # speakers (the default): nothing over the silence, and at 16 s S0 angry and S1 sad, each in its row
    fig = analysis_figure(y, 16_000, a)
    bars = [t for t in fig.data if t.type == "bar" and t.legendgroup in labels]
    spans = [(t.name, sp, b, b + x) for t in bars for sp, b, x in zip(t.y or [], t.base if t.base is not None else [],
                                                                       t.x if t.x is not None else [])]
    assert spans and not [s for s in spans if s[2] < 11.99 and s[3] > 5.01]
    at16 = {(name, sp) for name, sp, b, e in spans if b <= 16.0 < e}
    assert at16 == {("angry", "S0"), ("sad", "S1")}, at16
    # every lane labelled, in the speaker lanes (y axis 4: row 2 has a second one) and the emotion rows
    assert list(fig.layout.yaxis4.tickvals) == ["S0", "S1"] and list(fig.layout.yaxis5.tickvals) == ["S0", "S1"]
    # area: the stack is empty over the silence; strip: every emotion a row, blank in silence
    area = analysis_figure(y, 16_000, a, overlay="area")
    stack = np.sum([np.asarray(t.y, float) for t in area.data if t.type == "scatter" and t.stackgroup == "emo"], axis=0)
    xs = np.asarray([t for t in area.data if t.type == "scatter" and t.stackgroup == "emo"][0].x, float)
    assert (stack[(xs > 5.05) & (xs < 11.95)] == 0).all() and (stack[xs < 4.9] > 0.99).all()
    strip = analysis_figure(y, 16_000, a, overlay="strip")
    heat = [t for t in strip.data if t.type == "heatmap"][0]
    z, hx = np.asarray(heat.z, float), np.asarray(heat.x, float)
    assert list(heat.y) == labels and z.shape == (8, len(hx))
    assert np.isnan(z[:, (hx > 5.05) & (hx < 11.95)]).all()
    assert strip.layout.yaxis5.range is None  # not stuck at [0, 1] (which showed two of eight rows)


REAL = Path(__import__("os").environ.get("SER_SHARED", ROOT.parent / "shared")) / "data" / "diarization"


def _values(v):
    """A plotly figure array as sent to the browser: a list, or a typed array ({"dtype", "bdata": base64})."""
    if isinstance(v, dict):
        import base64
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


@pytest.mark.skipif(not (REAL / "pyannote_sample.wav").is_file(),
                    reason=f"needs the shared real recordings at {REAL} (../shared is absent in a user's clone)")
def test_lanes_show_overlapped_speech_as_both_speakers(page):
    """Issue 28: a real recording with 1.9 s of two people at once (pyannote's sample, its RTTM):
    uploaded on the page, the speaker lanes draw both speakers over most of that time."""
    from pyannote.database.util import load_rttm
    wav = REAL / "pyannote_sample.wav"
    page.radio(key="analyze_source").set_value("Upload").run()
    page.file_uploader(key="analyze_upload").upload(wav.name, wav.read_bytes(), "audio/wav").run()
    assert not page.exception and not page.error
    fig = json.loads(page.get("plotly_chart")[0].proto.spec)
    lanes = [t for t in fig["data"] if t["type"] == "bar" and t.get("xaxis") == "x3"
             and str(t.get("name", "")).startswith("SPEAKER_")]
    assert len(lanes) == 2
    grid = np.arange(0.0, 30.0, 0.01)
    on = np.zeros((len(lanes), len(grid)), bool)
    for i, t in enumerate(lanes):
        for b, d in zip(_values(t["base"]), _values(t["x"])):
            on[i] |= (grid >= b) & (grid < b + d)
    ref = np.zeros(len(grid), int)
    for seg, _, _ in load_rttm(wav.with_suffix(".rttm"))["pyannote_sample"].itertracks(yield_label=True):
        ref += (grid >= seg.start) & (grid < seg.end)
    both = on.sum(0) >= 2
    assert both[ref >= 2].mean() >= 0.5, both[ref >= 2].mean()  # measured: 1.27 of 1.9 s
    assert both[ref == 1].mean() < 0.1  # and not where one person talks
