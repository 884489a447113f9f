"""ser.serve.live: the streaming scorer (thread and process workers), its bounds, and what a
stopped session becomes (Analysis, WAV, timeline rows)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from audiogen import speak, tone

from ser.errors import AudioError, ConfigError
from ser.serve.live_engine import SR, LiveSettings, frame_to_mono
from ser.serve.live import LiveScorer, ice_servers


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from ser.emotion.model import load_model

    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def speech_then_silence() -> np.ndarray:
    """About 4 s of espeak-ng speech, then 3 s of silence, then speech again (16 kHz)."""
    y = speak("The quick brown fox jumps over the lazy dog, and then it runs far away.", speed=150)
    y = y[: 4 * SR] if len(y) > 4 * SR else np.pad(y, (0, 4 * SR - len(y)))
    return np.concatenate([y, np.zeros(3 * SR, np.float32), y]).astype(np.float32)


def feed(scorer: LiveScorer, y: np.ndarray, sr: int = SR, frame_s: float = 0.02) -> None:
    """Push ``y`` as int16 frames, the way a WebRTC track delivers them (not paced)."""
    step = int(sr * frame_s)
    pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
    for i in range(0, len(pcm), step):
        scorer.push(pcm[i:i + step], sr)


def check_matches_offline(model, scorer: LiveScorer) -> int:
    """Every scored window's probabilities equal the model's offline answer on the kept audio."""
    audio = scorer.audio()
    scored = [u for u in scorer.updates() if not u.no_speech]
    for u in scored:
        a, b = round(u.start_s * SR), round(u.end_s * SR)
        p = model.predict_proba(audio[a:b], SR)
        assert model.labels[int(np.argmax(p))] == u.emotion, u
        assert np.allclose([u.probabilities[k] for k in model.labels], p, atol=1e-4)
    return len(scored)


def test_thread_worker_scores_speech_gates_silence_and_matches_offline(model, speech_then_silence):
    s = LiveScorer(model, LiveSettings(window_s=2.0, hop_s=0.5), worker="thread")
    feed(s, speech_then_silence)
    s.stop()
    ups, st = s.updates(), s.stats()
    assert st.error is None and st.dropped_s == 0 and not st.running
    n = len(speech_then_silence) / SR
    assert st.received_s == pytest.approx(n, abs=0.02)
    ends = [u.end_s for u in ups]
    # the first update after 1 s (over what there is), then one per hop over the last 2 s
    assert ends == pytest.approx([1.0, 1.5, *np.arange(2.0, n + 1e-9, 0.5)])
    assert [u.start_s for u in ups[:4]] == [0.0, 0.0, 0.0, 0.5]
    # windows wholly inside the silence (4-7 s) say "no speech" and guess nothing
    silent = [u for u in ups if u.start_s >= 4.3 and u.end_s <= 6.7]
    assert silent and all(u.no_speech and u.probabilities is None for u in silent)
    assert all(not u.no_speech for u in ups if u.end_s <= 4.0)
    assert check_matches_offline(model, s) >= 8
    assert st.worker_cpu_s > 0 and all(u.latency_s >= 0 for u in ups)


def test_a_stopped_session_becomes_an_analysis_with_turns_windows_and_exports(model, speech_then_silence, tmp_path):
    from ser.analysis.result import Analysis
    from ser.audio.decode import load_audio
    from ser.analysis.exports import export

    s = LiveScorer(model, worker="thread")
    feed(s, speech_then_silence)
    s.stop()
    a = s.to_analysis("live test")
    assert a.duration_s == pytest.approx(len(speech_then_silence) / SR, abs=0.02)
    assert len(a.turns) >= 2 and all(t.speaker == "mic" for t in a.turns)
    assert not any(t.start_s < 6.5 and t.end_s > 4.6 for t in a.turns)  # nothing in the silence
    assert len(a.windows) == sum(not u.no_speech for u in s.updates()) and a.segments
    assert a.provenance["live"]["no_speech_windows"] >= 3 and a.provenance["source"] == "live microphone"
    back = Analysis.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back.windows == a.windows
    wav = load_audio(s.wav_bytes(), name="live.wav")
    assert wav.sr == SR and np.allclose(wav.y, s.audio(), atol=1e-4)
    written = export(a, tmp_path, ["json", "csv", "textgrid"])
    assert sorted(written) == ["csv", "json", "textgrid"] and all(p.stat().st_size > 100 for p in written.values())
    rows = s.timeline_rows()
    assert len(rows) == len(s.updates()) and {"no speech"} <= {r["emotion"] for r in rows}
    # History keeps it whole, and the History page's four-panel view draws it
    from ser.analysis.figures import analysis_figure
    from ser.serve.history import History

    hist = History(tmp_path / "h.sqlite")
    back, settings, audio = hist.get(hist.save(a, {"source": "live"}, audio=s.wav_bytes()))
    assert back.windows == a.windows and settings == {"source": "live"} and audio == s.wav_bytes()
    fig = analysis_figure(wav.y, wav.sr, back)
    assert fig.layout.xaxis.range is None or fig.layout.xaxis.range[1] >= a.duration_s - 0.1
    assert len(fig.data) >= 4


def test_process_worker_gives_the_same_timeline_and_reports_its_cpu(model, speech_then_silence):
    with LiveScorer(model, worker="process") as s:
        assert s.wait_ready(120), s.stats().error
        feed(s, speech_then_silence)
        s.stop()
        st = s.stats()
        assert st.error is None and st.updates == len(s.updates()) >= 10
        assert st.worker_cpu_s > 0
        assert check_matches_offline(model, s) >= 8
        first = [(u.end_s, u.emotion) for u in s.updates()]
        # a new session on the warm worker starts from zero
        s.reset(LiveSettings(window_s=1.0, hop_s=0.25))
        feed(s, speech_then_silence[: 3 * SR])
        s.stop()
        ends = [u.end_s for u in s.updates()]
        assert ends[0] == pytest.approx(1.0) and ends[-1] == pytest.approx(3.0) and len(ends) == 9
        assert len(s.audio()) == 3 * SR and first
        proc = s._proc
    proc.join(10)
    assert not proc.is_alive()


def test_other_input_rates_are_resampled_in_step(model, speech_then_silence):
    import soxr

    for rate in (48_000, 44_100, 8_000):
        y = soxr.resample(speech_then_silence, SR, rate).astype(np.float32)
        s = LiveScorer(model, worker="thread")
        feed(s, y, rate)
        s.stop()
        assert abs(len(s.audio()) - len(speech_then_silence)) < 0.01 * SR, rate
        assert s.stats().error is None and check_matches_offline(model, s) >= 5


class SlowModel:
    """The tiny model, 0.3 s slower per window: a worker that cannot keep up."""

    def __init__(self, model):
        self._m = model
        self.card, self.labels, self.path, self.device, self.id = model.card, model.labels, model.path, model.device, model.id

    def predict_proba(self, y, sr, **kw):
        time.sleep(0.3)
        return self._m.predict_proba(y, sr, **kw)

    def result(self, p):
        return self._m.result(p)


def test_a_worker_that_falls_behind_skips_old_windows_keeps_the_audio_and_says_so(model, speech_then_silence):
    s = LiveScorer(SlowModel(model), LiveSettings(max_queue_s=1.0), worker="thread")
    y = np.tile(speech_then_silence[: 4 * SR], 5)  # 20 s of speech
    t0 = time.perf_counter()
    step = SR // 50
    for k, i in enumerate(range(0, len(y), step)):  # 20 s pushed in about 2 s: ten times real time
        s.push(y[i:i + step], SR)
        time.sleep(max(0.0, t0 + k * 0.002 - time.perf_counter()))
    s.stop()
    st = s.stats()
    assert st.skipped_s > 5 and st.dropped_s == 0 and st.received_s == pytest.approx(20.0, abs=0.05)
    # skipped audio is kept, in real time (the saved session scores it), but not scored live
    assert len(s.audio()) == pytest.approx(20.0 * SR, abs=0.02 * SR)
    # of the 39 windows on the hop grid, those ending in late audio are not scored: with most of the
    # audio late, most windows go (not exactly 2 per skipped second: late and timely stretches
    # alternate, and each timely stretch may hold one more grid point than its length says)
    assert st.scored >= 2 and st.updates < 30
    ends = [u.end_s for u in s.updates()]
    assert ends == sorted(ends) and all(round(e / 0.5, 6).is_integer() for e in ends)  # still on the hop grid
    assert s.to_analysis().provenance["live"]["skipped_s"] == st.skipped_s


def test_the_session_limit_bounds_what_is_kept(model):
    s = LiveScorer(model, LiveSettings(window_s=1.0, hop_s=0.5, max_session_s=3.0), worker="thread")
    feed(s, tone(5.0, SR, freq=180.0))
    s.stop()
    st = s.stats()
    assert st.truncated and len(s.audio()) == 3 * SR
    assert max(u.end_s for u in s.updates()) <= 3.0 and st.updates == 9  # scoring went on past the limit


def test_silence_only_is_no_speech_not_a_guess(model):
    s = LiveScorer(model, worker="thread")
    feed(s, np.zeros(4 * SR, np.float32))
    s.stop()
    assert s.updates() and all(u.no_speech for u in s.updates())
    a = s.to_analysis()
    assert a.provenance["no_speech"] and not a.turns and not a.windows


def test_frames_from_pyav_become_mono_float(model):
    import av

    left, right = np.full(960, 0.5, np.float32), np.full(960, -0.25, np.float32)
    packed = av.AudioFrame.from_ndarray((np.stack([left, right], 1).reshape(1, -1) * 32767).astype(np.int16),
                                        format="s16", layout="stereo")
    packed.sample_rate = 48_000
    y, sr = frame_to_mono(packed)
    assert sr == 48_000 and y.dtype == np.float32 and y.shape == (960,) and np.allclose(y, 0.125, atol=1e-3)
    planar = av.AudioFrame.from_ndarray(np.stack([left, right]), format="fltp", layout="stereo")
    planar.sample_rate = 44_100
    y, sr = frame_to_mono(planar)
    assert sr == 44_100 and np.allclose(y, 0.125)
    s = LiveScorer(model, worker="thread")
    s.push_frame(packed)
    s.stop()
    assert s.stats().received_s == pytest.approx(0.02)


def test_packets_lost_on_the_way_become_silence_in_real_time(model):
    """WebRTC frames carry RTP timestamps: a gap (lost packets) is filled with silence so the kept
    recording and the timeline stay in real time; a jump backwards or over MAX_GAP_S is not a loss."""
    import av
    from fractions import Fraction

    from ser.serve.live_engine import MAX_GAP_S

    def frame(k: int, value: float, pts: int | None = None):
        f = av.AudioFrame.from_ndarray(np.full((1, 960), int(value * 32767), np.int16), format="s16", layout="mono")
        f.sample_rate, f.time_base, f.pts = 48_000, Fraction(1, 48_000), k * 960 if pts is None else pts
        return f

    s = LiveScorer(model, worker="thread")
    for k in range(50):  # 1 s of tone ...
        s.push_frame(frame(k, 0.5))
    for k in range(75, 125):  # ... 0.5 s lost (25 frames) ... 1 s more
        s.push_frame(frame(k, 0.5))
    s.push_frame(frame(0, 0.5))  # the sender restarted its clock: no gap
    s.push_frame(frame(0, 0.5, pts=int((1 + MAX_GAP_S) * 48_000)))  # a jump past MAX_GAP_S: no gap either
    s.stop()
    st = s.stats()
    assert st.lost_s == pytest.approx(0.5) and st.received_s == pytest.approx(2.54)
    y = s.audio()
    assert len(y) == pytest.approx(2.54 * SR, abs=0.03 * SR)
    # the silence sits where the packets were missing, not at the end (resampler edges aside)
    assert np.abs(y[round(1.05 * SR): round(1.45 * SR)]).max() < 0.01
    assert np.abs(y[round(1.55 * SR): round(2.45 * SR)]).min() > 0.3
    assert s.to_analysis().provenance["live"]["lost_s"] == pytest.approx(0.5)


def test_bad_settings_and_frames_are_rejected_clearly(model):
    with pytest.raises(ConfigError, match="hop_s"):
        LiveSettings(window_s=2.0, hop_s=3.0)
    with pytest.raises(ConfigError, match="window_s"):
        LiveSettings(window_s=0.1)
    with pytest.raises(ConfigError, match="worker"):
        LiveScorer(model, worker="gpu")
    s = LiveScorer(model, worker="thread")
    with pytest.raises(AudioError, match="sample rate"):
        s.push(np.zeros(10, np.float32), 0)
    with pytest.raises(ConfigError, match="after stop"):
        s.audio()


def test_ice_servers_are_empty_unless_configured(monkeypatch):
    monkeypatch.delenv("SER_ICE_SERVERS", raising=False)
    assert ice_servers() == []  # no public STUN server by default
    monkeypatch.setenv("SER_ICE_SERVERS", '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]')
    assert ice_servers() == [{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]
    assert ice_servers([{"urls": ["stun:stun.example.org:3478"]}]) == [{"urls": ["stun:stun.example.org:3478"]}]
    with pytest.raises(ConfigError, match="not valid JSON"):
        ice_servers("[{urls: nope")
    with pytest.raises(ConfigError, match="needs 'urls'"):
        ice_servers([{"username": "u"}])


def test_a_worker_process_that_dies_is_reported_not_waited_for(model, speech_then_silence):
    import os
    import signal

    s = LiveScorer(model, worker="process")
    try:
        assert s.wait_ready(120)
        feed(s, speech_then_silence[: 2 * SR])
        os.kill(s._proc.pid, signal.SIGKILL)
        deadline = time.time() + 15
        while s.stats().error is None and time.time() < deadline:
            time.sleep(0.2)
        assert "ended unexpectedly" in s.stats().error
        t0 = time.perf_counter()
        s.stop()
        assert time.perf_counter() - t0 < 5
        with pytest.raises(ConfigError, match="worker failed"):
            s.to_analysis()
    finally:
        s.close()


def test_a_program_whose_worker_died_still_exits(tiny_model_dir, tmp_path):
    """Frames the dead worker never read must not keep the interpreter from exiting (this hung
    a whole test run once: the queue's feeder thread waited on a full pipe at exit)."""
    import subprocess
    import sys

    script = tmp_path / "die.py"
    script.write_text(f"""
import os, signal, time
import numpy as np
from ser.serve.live import LiveScorer
from ser.emotion import load_model

if __name__ == "__main__":
    s = LiveScorer(load_model({str(tiny_model_dir)!r}, device="cpu"), worker="process")
    assert s.wait_ready(120)
    os.kill(s._proc.pid, signal.SIGSTOP)  # the worker stops reading
    for _ in range(300):  # 6 s of 20 ms frames: more than a pipe holds
        s.push(np.zeros(960, np.int16), 48_000)
    time.sleep(1.0)
    os.kill(s._proc.pid, signal.SIGKILL)
    print("pushed", flush=True)
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0 and "pushed" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_frames_that_came_while_the_worker_started_are_scored_not_dropped(model, speech_then_silence, worker):
    """A user who presses Start before the worker has loaded loses nothing: the wait that counts as
    falling behind starts when the worker runs. (The frames here say they arrived 5 s ago — more
    than max_queue_s — so a worker that counted from their arrival would drop every one.)"""
    s = LiveScorer(model, worker=worker)
    try:
        t = s.clock() - 5.0
        y = speech_then_silence[: 4 * SR]
        for i in range(0, len(y), 320):
            s.push(y[i:i + 320], SR, arrived=t)
        s.stop()
        st = s.stats()
    finally:
        s.close()
    assert st.dropped_s == 0 and st.received_s == pytest.approx(4.0, abs=0.05), st
    assert st.scored + st.no_speech >= 4, st
