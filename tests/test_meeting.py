"""The meeting simulator (one room, backchannels, interruptions) and the DER breakdown by overlap."""

from __future__ import annotations

import numpy as np
import pytest

from ser.analysis.demo import Turn
from ser.diarization.breakdown import breakdown, pooled
from ser.diarization.meeting import MeetingSettings, simulate_meeting, stretches

SR = 16000


def _voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A voiced 'utterance' with a 0.4-s pause in the middle (so it splits into two stretches)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    y = (0.2 * y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    mid = len(y) // 2
    y[mid - int(0.2 * SR): mid + int(0.2 * SR)] = 0.0
    return y


@pytest.fixture(scope="module")
def pool():
    table = {f"s{k}/{i}": _voice(100 + 40 * k, 2.0 + 0.7 * i, 10 * k + i) for k in range(5) for i in range(4)}
    return {"librispeech16k": {f"s{k}": [f"s{k}/{i}" for i in range(4)] for k in range(5)}}, table


def test_stretches_cut_at_pauses():
    y = _voice(150, 3.0, 1)
    parts = stretches(y)
    assert len(parts) == 2 and all(len(p) > 0.5 * SR for p in parts)
    assert sum(len(p) for p in parts) < len(y)  # the pause is left out


def test_a_meeting_overlaps_as_asked_and_its_reference_is_where_each_voice_is(pool):
    spk, table = pool
    st = MeetingSettings(duration_s=(60, 60), overlap=(0.2, 0.45), snr_db=(200, 200))
    m = simulate_meeting(spk, 11, st, load=lambda p: table[str(p)], sources=True)
    assert 3 <= m.info["speakers"] <= 5 and len(m.sources) == m.info["speakers"]
    assert 0.2 <= m.info["overlap_fraction"] <= 0.45
    assert np.allclose(sum(m.sources.values()), m.y, atol=1e-4)  # noise 200 dB down: the mix is the voices
    for name, track in m.sources.items():
        mask = np.zeros(len(track), bool)
        for t in m.turns:
            if t.speaker == name:
                mask[int(round(t.start_s * SR)):int(round(t.end_s * SR))] = True
        assert np.abs(track[~mask]).max() == 0.0  # silent outside its reference segments
    dist = [v["distance_m"] for v in m.info["voices"]]
    assert len({v["rt60_s"] for v in m.info["voices"]}) == 1 and min(dist) >= 0.5 and max(dist) <= 3.0  # one room
    again = simulate_meeting(spk, 11, st, load=lambda p: table[str(p)])
    assert np.array_equal(again.y, m.y) and again.turns == m.turns  # seeded
    short = [t for t in m.turns if t.end_s - t.start_s <= 0.8]
    assert short, "no backchannels"


def test_meetings_span_little_to_much_overlap(pool):
    spk, table = pool
    st = MeetingSettings(duration_s=(60, 60))
    ovl = [simulate_meeting(spk, s, st, load=lambda p: table[str(p)]).info["overlap_fraction"] for s in range(8)]
    assert all(0.05 <= o <= 0.5 for o in ovl) and max(ovl) - min(ovl) > 0.15


def test_breakdown_puts_missed_speech_where_it_is():
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref = [Turn(0.0, 10.0, "A"), Turn(5.0, 15.0, "B"), Turn(20.0, 24.0, "A")]
    hyp = [Turn(0.0, 15.0, "x"), Turn(21.0, 24.0, "x"), Turn(30.0, 31.0, "y")]
    b = breakdown(ref, hyp, collar=0.0)
    assert b["total_s"] == pytest.approx(24.0)
    assert b["missed_overlap"] == pytest.approx(5.0 / 24)  # B under A, given to one speaker
    assert b["missed_single"] == pytest.approx(1.0 / 24)  # 20-21 s
    assert b["false_alarm"] == pytest.approx(1.0 / 24)
    assert b["overlap_recall"] == 0.0 and b["overlap_precision"] is None
    r, h = Annotation(), Annotation()
    for ann, turns in ((r, ref), (h, hyp)):
        for t in turns:
            ann[Segment(t.start_s, t.end_s)] = t.speaker
    d = DiarizationErrorRate(collar=0.0)(r, h, detailed=True)
    assert b["missed_single"] + b["missed_overlap"] == pytest.approx(d["missed detection"] / d["total"], abs=1e-3)
    both = breakdown(ref, [Turn(0, 10, "x"), Turn(6, 15, "y")], collar=0.0)
    assert both["overlap_recall"] == pytest.approx(4 / 5) and both["overlap_precision"] == pytest.approx(1.0)
    # with a collar, the time around each reference boundary is not scored, as in pyannote
    c = breakdown(ref, hyp, collar=0.5)
    d = DiarizationErrorRate(collar=0.5)(r, h, detailed=True)
    assert c["total_s"] == pytest.approx(d["total"], abs=0.02)
    assert c["missed_single"] + c["missed_overlap"] == pytest.approx(d["missed detection"] / d["total"], abs=2e-3)
    p = pooled([b, both])
    assert p["total_s"] == pytest.approx(48.0) and p["overlap_recall"] == pytest.approx(4 / 10)
