"""Exports of an Analysis, each read back with the library of its format."""

from __future__ import annotations

import csv
import json

import pytest

from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn
from ser.errors import ConfigError
from ser.analysis.exports import FORMATS, export

LABELS = ["neutral", "happy", "sad", "angry"]


def _probs(top: str, p: float = 0.7) -> dict[str, float]:
    rest = (1 - p) / (len(LABELS) - 1)
    return {x: (p if x == top else rest) for x in LABELS}


@pytest.fixture
def analysis() -> Analysis:
    turns = [SpeakerTurn(0.5, 3.0, "A"), SpeakerTurn(2.5, 6.0, "B"), SpeakerTurn(6.5, 8.0, "A")]  # A and B overlap
    segs = [EmotionSegment(0.5, 3.0, "A", "angry", _probs("angry")),
            EmotionSegment(2.5, 6.0, "B", "sad", _probs("sad", 0.4), uncertain=True),
            EmotionSegment(6.5, 8.0, "A", "happy", _probs("happy"))]
    wins = [EmotionSegment(0.5, 2.5, "A", "angry", _probs("angry"), kind="window")]
    return Analysis("talk", 10.0, LABELS, turns, segs, wins, {"model": "tiny@0"})


def test_json_round_trip_and_summary(analysis, tmp_path):
    paths = export(analysis, tmp_path, ["json"])
    d = json.loads(paths["json"].read_text())
    assert d["schema"] == "ser.analysis/2"
    assert Analysis.from_dict(d).to_dict() == d
    assert {"emotion", "probabilities"} <= set(d["segments"][0])
    a = d["speakers"]["A"]
    assert a["talk_time_s"] == pytest.approx(4.0) and a["turns"] == 2
    assert a["mean_probabilities"]["angry"] == pytest.approx((0.7 * 2.5 + 0.1 * 1.5) / 4.0)
    assert a["dominant_emotion"] == "angry"


def test_csv(analysis, tmp_path):
    rows = list(csv.DictReader(open(export(analysis, tmp_path, ["csv"])["csv"])))
    assert [r["kind"] for r in rows] == ["turn", "turn", "turn", "window"]
    assert rows[1]["uncertain"] == "1" and float(rows[0]["p_angry"]) == pytest.approx(0.7)


def test_rttm_reads_back_with_pyannote(analysis, tmp_path):
    from pyannote.database.util import load_rttm

    ann = load_rttm(export(analysis, tmp_path, ["rttm"])["rttm"])["talk"]
    assert sorted(ann.labels()) == ["A", "B"]
    assert ann.label_duration("A") == pytest.approx(4.0) and ann.label_duration("B") == pytest.approx(3.5)


def test_textgrid_reads_back_with_praatio(analysis, tmp_path):
    from praatio import textgrid

    tg = textgrid.openTextgrid(str(export(analysis, tmp_path, ["textgrid"])["textgrid"]), includeEmptyIntervals=False)
    assert list(tg.tierNames) == ["A", "A emotion", "B", "B emotion"]  # a speaker tier and an emotion tier each
    assert [(round(e.start, 3), round(e.end, 3), e.label) for e in tg.getTier("A").entries] == [
        (0.5, 3.0, "A"), (6.5, 8.0, "A")]
    assert [(round(e.start, 3), round(e.end, 3), e.label) for e in tg.getTier("B").entries] == [(2.5, 6.0, "B")]
    assert [e.label for e in tg.getTier("A emotion").entries] == ["angry", "happy"]
    assert [e.label for e in tg.getTier("B emotion").entries] == ["sad?"]  # the overlap stays two speakers
    assert tg.maxTimestamp == pytest.approx(10.0)


def test_eaf_reads_back_with_pympi(analysis, tmp_path):
    from pympi.Elan import Eaf

    eaf = Eaf(str(export(analysis, tmp_path, ["eaf"], media="talk.wav")["eaf"]))
    assert sorted(eaf.get_tier_names()) == ["A", "A emotion", "B", "B emotion"]
    assert eaf.get_annotation_data_for_tier("A") == [(500, 3000, "A"), (6500, 8000, "A")]
    assert eaf.get_annotation_data_for_tier("A emotion") == [(500, 3000, "angry (0.70)"), (6500, 8000, "happy (0.70)")]
    (linked,) = eaf.get_linked_files()
    assert linked["RELATIVE_MEDIA_URL"] == "talk.wav"  # ELAN opens it with the recording beside it


def test_audacity_labels(analysis, tmp_path):
    lines = export(analysis, tmp_path, ["audacity"])["audacity"].read_text().splitlines()
    assert lines[0].split("\t") == ["0.500000", "3.000000", "A: angry"]
    assert len(lines) == 3


def test_all_formats_at_once_and_unknown_format(analysis, tmp_path):
    paths = export(analysis, tmp_path)
    assert sorted(paths) == sorted(FORMATS) and all(p.stat().st_size > 0 for p in paths.values())
    assert paths["textgrid"].name == "talk.TextGrid"
    with pytest.raises(ConfigError, match="Unknown export format"):
        export(analysis, tmp_path, ["docx"])


def test_empty_analysis_exports(tmp_path):
    a = Analysis("silence", 5.0, LABELS)
    paths = export(a, tmp_path)
    assert json.loads(paths["json"].read_text())["segments"] == []


def test_every_format_carries_the_same_turns_an_unscored_one_included(analysis, tmp_path):
    """One set of turns behind every export: RTTM, CSV, TextGrid, EAF, Audacity and JSON list the
    same turns (count and times to 10 ms), and a turn too short to score is marked, not dropped."""
    from praatio import textgrid
    from pympi.Elan import Eaf
    from pyannote.database.util import load_rttm

    analysis.turns.append(SpeakerTurn(8.2, 8.4, "B"))  # too short: no emotion segment
    analysis.provenance["unscored_turns"] = [3]
    p = export(analysis, tmp_path, FORMATS)
    want = sorted((round(t.start_s, 2), round(t.end_s, 2), t.speaker) for t in analysis.turns)

    rttm = sorted((round(s.start, 2), round(s.end, 2), lb) for s, _, lb in load_rttm(p["rttm"])["talk"].itertracks(True))
    rows = [r for r in csv.DictReader(open(p["csv"])) if r["kind"] == "turn"]
    csv_turns = sorted((round(float(r["start_s"]), 2), round(float(r["end_s"]), 2), r["speaker"]) for r in rows)
    tg = textgrid.openTextgrid(str(p["textgrid"]), includeEmptyIntervals=False)
    tg_turns = sorted((round(e.start, 2), round(e.end, 2), name) for name in tg.tierNames if not name.endswith(" emotion")
                      for e in tg.getTier(name).entries)
    eaf = Eaf(str(p["eaf"]))
    eaf_turns = sorted((round(a / 1000, 2), round(b / 1000, 2), name) for name in eaf.get_tier_names()
                       if not name.endswith(" emotion") for a, b, _ in eaf.get_annotation_data_for_tier(name))
    aud = [line.split("\t") for line in p["audacity"].read_text().splitlines()]
    aud_turns = sorted((round(float(a), 2), round(float(b), 2), lb.split(": ")[0]) for a, b, lb in aud)
    js = json.loads(p["json"].read_text())
    json_turns = sorted((round(t["start_s"], 2), round(t["end_s"], 2), t["speaker"]) for t in js["turns"])
    for name, got in (("rttm", rttm), ("csv", csv_turns), ("textgrid", tg_turns), ("eaf", eaf_turns),
                      ("audacity", aud_turns), ("json", json_turns)):
        assert got == want, name
    unscored = [r for r in rows if r["emotion"] == "unscored"]
    assert len(unscored) == 1 and unscored[0]["p_angry"] == "" and unscored[0]["start_s"] == "8.200"
    assert [e.label for e in tg.getTier("B emotion").entries] == ["sad?", "unscored"]
    assert aud[-1][2] == "B: unscored"
