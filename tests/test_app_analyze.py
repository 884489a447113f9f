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
    assert "bar" in kinds and kinds.count("scatter") >= 3  # waveform, F0, emotion areas
    images = fig["layout"]["images"]  # the mel spectrogram, one PNG
    assert len(images) == 1 and images[0]["source"].startswith("data:image/png;base64,")
    titles = [a["text"] for a in fig["layout"]["annotations"]][:4]
    assert titles == ["Waveform", "Mel spectrogram", "Speakers", "Emotion"]
    bars = {t["name"] for t in fig["data"] if t["type"] == "bar"}
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
    bars = [t for t in f_many.data if t.type == "bar"]
    assert len(bars) == 3  # one per speaker
    emo = [t for t in f_many.data if t.type == "scatter" and t.stackgroup == "emo"]
    assert all(len(t.x) <= 600 for t in emo)
    notes = [a_ for a_ in f_many.layout.annotations if a_.text in ("happy", "happy?")]
    assert len(notes) <= 200
    zoom = analysis_figure(y, 16_000, many, t0=100.0, t1=110.0)
    inside = [w for w in many.windows if w.end_s > 100.0 and w.start_s < 110.0]
    assert len([t for t in zoom.data if t.type == "scatter" and t.stackgroup == "emo"][0].x) == len(inside)
    assert list(zoom.layout.xaxis.range) == [100.0, 110.0]
