"""ser.analysis.pipeline.analyze and `ser analyze`: turns → emotions → Analysis → exports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from audiogen import tone, write
from conftest import needs_ravdess
from ser.analysis.result import Analysis, SpeakerTurn
from ser.audio.decode import Audio
from ser.errors import ConfigError
from ser.analysis.pipeline import StageCache, analyze, plan_windows, relabel


class FixedDiarizer:
    """A Diarizer that returns given turns (the pipeline treats it like any backend)."""

    name = "fixed"

    def __init__(self, turns):
        self.turns = turns
        self.calls = 0

    def settings(self):
        return {"backend": self.name, "turns": [(t.start_s, t.end_s, t.speaker) for t in self.turns]}

    def __call__(self, y, sr, *, num_speakers=None, min_speakers=None, max_speakers=None, progress=None):
        self.calls += 1
        return list(self.turns)


def _audio(y, name="clip"):
    return Audio(y=y, sr=16000, source_sr=16000, source_channels=1, codec="pcm", name=name)


def test_plan_windows_cover_every_turn():
    turns = [SpeakerTurn(0.0, 1.2, "A"), SpeakerTurn(2.0, 9.3, "B"), SpeakerTurn(9.5, 12.0, "A")]
    ws = plan_windows(turns, 16000, 2.0, 1.0, 16000 * 12)
    for i, t in enumerate(turns):
        mine = [w for w in ws if w.turn == i]
        assert min(w.start for w in mine) == round(t.start_s * 16000)
        assert max(w.end for w in mine) == round(t.end_s * 16000)
        if t.duration_s > 3.0:  # long turn: fixed-length windows every hop
            assert all(w.end - w.start == 32000 for w in mine) and len(mine) == 7
        else:
            assert len(mine) == 1


def test_short_turn_keeps_its_speaker_but_gets_no_emotion(tiny_model_dir, speech_like):
    y = np.concatenate([speech_like, speech_like])  # 4 s
    turns = [SpeakerTurn(0.0, 0.3, "SPEAKER_00"), SpeakerTurn(0.5, 4.0, "SPEAKER_01")]
    a = analyze(_audio(y), diarizer=FixedDiarizer(turns), model=tiny_model_dir, device="cpu", cache=None)
    assert a.turns == turns
    assert a.provenance["unscored_turns"] == [0]
    assert [s.speaker for s in a.segments] == ["SPEAKER_01"]
    seg = a.segments[0]
    assert (seg.start_s, seg.end_s) == (0.5, 4.0) and abs(sum(seg.probabilities.values()) - 1) < 1e-4
    assert seg.emotion == max(seg.probabilities, key=seg.probabilities.get)
    # a 3.5 s turn: 2 s windows at 0.5 and 1.5 s, and one aligned to its end
    assert [(w.start_s, w.end_s) for w in a.windows] == [(0.5, 2.5), (1.5, 3.5), (2.0, 4.0)]
    assert all(w.kind == "window" for w in a.windows)
    # the summary counts the unscored turn's talk time
    assert a.speaker_summary()["SPEAKER_00"]["talk_time_s"] == pytest.approx(0.3)
    assert a.speaker_summary()["SPEAKER_00"]["dominant_emotion"] is None


def test_noise_only_is_a_no_speech_result_not_an_error(tiny_model_dir, tmp_path):
    rng = np.random.default_rng(0)
    y = (0.002 * rng.standard_normal(16000 * 6)).astype(np.float32)
    path = write(tmp_path / "room.wav", y, 16000, "wav")
    a = analyze(path, model=tiny_model_dir, device="cpu", cache=None)
    assert a.provenance["no_speech"] is True
    assert a.turns == [] and a.segments == [] and a.windows == []
    assert a.duration_s == pytest.approx(6.0)
    from ser.analysis.exports import FORMATS, export
    paths = export(a, tmp_path / "out", FORMATS, stem="room")
    assert all(p.exists() for p in paths.values())
    assert Analysis.from_dict(json.loads(paths["json"].read_text())).turns == []


def test_changing_counts_or_model_reuses_unchanged_stages(tiny_model_dir, speech_like, tmp_path):
    import shutil
    other = tmp_path / "tiny2"
    shutil.copytree(tiny_model_dir, other)
    card = json.loads((other / "card.json").read_text())
    card["name"] = "tiny2"
    (other / "card.json").write_text(json.dumps(card))
    y = np.concatenate([speech_like, np.zeros(8000, np.float32), tone(2.0, freq=120.0, seed=3)])
    cache = StageCache()
    from ser.diarization.backends import BuiltinDiarizer
    dia = BuiltinDiarizer()
    first = analyze(_audio(y), diarizer=dia, model=tiny_model_dir, device="cpu", cache=cache)
    assert cache.misses == {"embeddings": 1, "turns": 1, "emotion": 1}
    assert first.provenance["reused_stages"] == []
    again = analyze(_audio(y), diarizer=dia, model=tiny_model_dir, device="cpu", cache=cache)
    assert again.provenance["reused_stages"] == ["embeddings", "turns", "emotion"]
    assert cache.misses == {"embeddings": 1, "turns": 1, "emotion": 1}
    two = analyze(_audio(y), diarizer=dia, model=tiny_model_dir, device="cpu", cache=cache, num_speakers=2)
    assert cache.hits.get("embeddings") == 2 and cache.misses["turns"] == 2
    assert two.provenance["reused_stages"][0] == "embeddings" and "turns" not in two.provenance["reused_stages"]
    emotion_misses = cache.misses["emotion"]  # 1 or 2: the same turns are not rescored
    analyze(_audio(y), diarizer=dia, model=other, device="cpu", cache=cache, num_speakers=2)
    assert cache.hits.get("turns") == 2 and cache.misses["embeddings"] == 1
    assert cache.misses["emotion"] == emotion_misses + 1


def test_bad_parameters_are_config_errors(tiny_model_dir, speech_like):
    with pytest.raises(ConfigError, match="window_s"):
        analyze(_audio(speech_like), model=tiny_model_dir, window_s=0.1)
    with pytest.raises(ConfigError, match="hop_s"):
        analyze(_audio(speech_like), model=tiny_model_dir, window_s=2.0, hop_s=3.0)
    with pytest.raises(ConfigError, match="not both"):
        analyze(_audio(speech_like), model=tiny_model_dir, num_speakers=2, min_speakers=1)


def test_relabel_to_valence_keeps_times_and_sums_to_one(tiny_model_dir, speech_like):
    a = analyze(_audio(np.concatenate([speech_like] * 2)), diarizer=FixedDiarizer([SpeakerTurn(0.0, 4.0, "A")]),
                model=tiny_model_dir, device="cpu", cache=None)
    v = relabel(a, "valence3")
    assert sorted(v.labels) == ["negative", "neutral", "positive"]
    assert [(s.start_s, s.end_s) for s in v.windows] == [(s.start_s, s.end_s) for s in a.windows]
    assert all(abs(sum(s.probabilities.values()) - 1) < 1e-4 for s in v.segments + v.windows)


@needs_ravdess
def test_ravdess_conversation_end_to_end():
    """Two actors take turns; the analysis finds two speakers, scores every turn with the
    shipped model, and the per-speaker summary adds up."""
    from test_diarization import _ravdess_clips

    from ser.analysis.demo import conversation
    a = _ravdess_clips(1, ("01", "02", "03", "05"), 3, offset=2)
    b = _ravdess_clips(2, ("01", "02", "03", "05"), 3, offset=5)
    y, truth = conversation([x for pair in zip(a, b) for x in pair], seed=3)
    res = analyze(_audio(y, "dialogue"), cache=None, device="cpu")
    assert len(res.speakers) == 2
    assert res.provenance["audio"]["sha256"] == _audio(y).content_hash()
    assert res.provenance["model"]["name"] == "default"
    summary = res.speaker_summary()
    assert sum(s["talk_time_s"] for s in summary.values()) == pytest.approx(sum(t.duration_s for t in res.turns))
    assert sum(s["turns"] for s in summary.values()) == len(res.turns)
    assert len(res.segments) + len(res.provenance["unscored_turns"]) == len(res.turns)
    for s in summary.values():
        assert abs(sum(s["mean_probabilities"].values()) - 1) < 1e-3


def _ser(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ser.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_analyze_writes_every_format_and_reports_bad_files(tmp_path, tiny_model_dir, speech_like):
    folder = tmp_path / "in"
    folder.mkdir()
    y = np.concatenate([speech_like, np.zeros(8000, np.float32), tone(2.0, freq=140.0, seed=2)])
    write(folder / "talk.flac", y, 16000, "flac")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00")
    out = tmp_path / "out"
    r = _ser("analyze", folder, "--model", tiny_model_dir, "--device", "cpu", "--speakers", "1",
             "--format", "json,csv,rttm,textgrid,eaf,audacity", "--out", out, "--quiet")
    assert r.returncode == 1, r.stderr  # one bad file
    assert "Traceback" not in r.stderr and "broken.wav" in r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["summary.csv", "talk.TextGrid", "talk.csv", "talk.eaf", "talk.json", "talk.rttm", "talk.txt"]
    d = json.loads((out / "talk.json").read_text())
    assert d["schema"] == "ser.analysis/2" and d["provenance"]["speaker_counts"]["num_speakers"] == 1
    r = _ser("analyze", folder / "talk.flac", "--format", "pdf", "--out", out)
    assert r.returncode == 2 and "Unknown format" in r.stderr and "Traceback" not in r.stderr
    r = _ser("analyze", folder / "talk.flac", "--speakers", "2", "--min-speakers", "1")
    assert r.returncode == 2 and "not allowed with" in r.stderr


def test_stage_cache_computes_a_result_once_for_threads_that_want_it_together():
    import threading
    import time as _time

    cache, calls, out = StageCache(), [], []
    started = threading.Event()

    def slow():
        calls.append(threading.current_thread().name)
        started.set()
        _time.sleep(0.3)
        return {"value": 42}

    first = threading.Thread(target=lambda: out.append(cache.get_or_compute("turns", "k", slow)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: out.append(cache.get_or_compute("turns", "k", slow)))
    second.start()
    first.join(5)
    second.join(5)
    assert len(calls) == 1 and out[0] is out[1] and out[0] == {"value": 42}
    assert cache.misses["turns"] == 1 and cache.hits["turns"] == 1

    # a computation that fails does not leave the waiting thread without a result
    failing = threading.Event()

    def broken():
        failing.set()
        _time.sleep(0.2)
        raise RuntimeError("decoder crashed")

    errors = []

    def run_broken():
        try:
            cache.get_or_compute("emotion", "k2", broken)
        except RuntimeError as exc:
            errors.append(str(exc))

    a = threading.Thread(target=run_broken)
    a.start()
    failing.wait(5)
    b = threading.Thread(target=lambda: out.append(cache.get_or_compute("emotion", "k2", lambda: "recomputed")))
    b.start()
    a.join(5)
    b.join(5)
    assert errors == ["decoder crashed"] and out[-1] == "recomputed"
