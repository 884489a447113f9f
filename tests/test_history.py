"""The History database: save, list, reopen, compare, delete; a kill never leaves a broken row."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ser.analysis import Analysis, EmotionSegment, SpeakerTurn
from ser.errors import DataError
from ser.history import History


def _analysis(name="talk.wav", sha="ab" * 32):
    probs = {"neutral": 0.7, "happy": 0.3}
    return Analysis(name=name, duration_s=4.0, labels=["neutral", "happy"],
                    turns=[SpeakerTurn(0.0, 2.0, "SPEAKER_00"), SpeakerTurn(2.5, 4.0, "SPEAKER_01")],
                    segments=[EmotionSegment(0.0, 2.0, "SPEAKER_00", "neutral", probs),
                              EmotionSegment(2.5, 4.0, "SPEAKER_01", "neutral", probs)],
                    provenance={"audio": {"sha256": sha}})


def test_save_list_get_find_delete(tmp_path):
    h = History(tmp_path / "h.sqlite")
    settings = {"model": "default@0.1.0", "window_s": 2.0}
    i = h.save(_analysis(), settings)
    j = h.save(_analysis("other.wav", "cd" * 32), settings, audio=b"RIFF....", audio_name="other.wav")
    entries = h.list()
    assert [e.id for e in entries] == [j, i]  # newest first
    assert entries[0].has_audio and not entries[1].has_audio
    assert entries[1].speakers == 2 and entries[1].turns == 2
    a, s, audio = h.get(i)
    assert a.turns == _analysis().turns and s == settings and audio is None
    assert h.get(j)[2] == b"RIFF...."
    assert h.find("ab" * 32, settings) == i and h.find("ab" * 32, {"model": "x"}) is None
    assert h.delete(i) and not h.delete(i)
    with pytest.raises(DataError, match="No saved analysis"):
        h.get(i)
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="SER_HISTORY_DB"):
        History(blocker / "sub" / "h.sqlite")


def test_killing_a_writer_leaves_only_whole_rows(tmp_path):
    db = tmp_path / "h.sqlite"
    History(db)
    writer = f"""
from ser.history import History
from ser.analysis import Analysis, SpeakerTurn
h = History({str(db)!r})
a = Analysis("x.wav", 600.0, ["neutral"], turns=[SpeakerTurn(i, i + 0.5, "S") for i in range(3000)],
             provenance={{"audio": {{"sha256": "00"}}}})
while True:
    h.save(a, {{"n": 1}}, audio=bytes(2_000_000))
"""
    proc = subprocess.Popen([sys.executable, "-c", writer])
    deadline = time.time() + 60
    while time.time() < deadline and len(History(db).list()) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    h = History(db)
    assert h.check() == "ok"
    entries = h.list()
    assert len(entries) >= 3
    for e in entries:  # every row is complete: its JSON parses and the audio is all there
        a, settings, audio = h.get(e.id)
        assert len(a.turns) == 3000 and settings == {"n": 1} and len(audio) == 2_000_000
