"""The History database: save, list, reopen, compare, delete; a kill never leaves a broken row."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn
from ser.errors import DataError
from ser.serve.history import History


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
from ser.serve.history import History
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


def _on_disk(h: History, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the database's files (main file, WAL, shared memory)."""
    from pathlib import Path
    return any(needle in p.read_bytes() for p in (h.path, Path(f"{h.path}-wal"), Path(f"{h.path}-shm"))
               if p.exists())


def _recording(seed: int) -> bytes:
    import numpy as np
    return b"RIFF" + np.random.default_rng(seed).integers(0, 256, 200_000, dtype=np.uint8).tobytes()


def test_delete_all_removes_analyses_and_audio_from_disk(tmp_path):
    h = History(tmp_path / "h.sqlite")
    audios = [_recording(k) for k in range(3)]
    for k, audio in enumerate(audios):
        h.save(_analysis(f"interview{k}.wav", f"{k:02d}" * 32), {"model": "m"}, audio=audio, audio_name=f"i{k}.wav")
    st = h.stats()
    assert st["analyses"] == 3 and st["with_audio"] == 3 and st["audio_bytes"] == sum(map(len, audios))
    assert st["disk_bytes"] > 600_000 and str(h.path) in st["files"]
    assert all(_on_disk(h, a[1000:1064]) for a in audios)
    assert h.delete_all() == 3
    assert h.list() == [] and not any(_on_disk(h, a[1000:1064]) for a in audios)
    assert not _on_disk(h, b"interview0.wav")
    assert h.stats()["disk_bytes"] < 100_000  # vacuumed, WAL truncated


def test_deleting_one_analysis_removes_its_audio_from_disk(tmp_path):
    h = History(tmp_path / "h.sqlite")
    keep, drop = _recording(1), _recording(2)
    i = h.save(_analysis("keep.wav"), {}, audio=keep, audio_name="keep.wav")
    j = h.save(_analysis("drop.wav"), {}, audio=drop, audio_name="drop.wav")
    assert h.delete(j)
    assert _on_disk(h, keep[5000:5064]) and not _on_disk(h, drop[5000:5064])
    assert h.get(i)[2] == keep


def test_retention_drops_old_audio_and_keeps_the_analyses(tmp_path, monkeypatch):
    h = History(tmp_path / "h.sqlite")
    old, new = _recording(3), _recording(4)
    i = h.save(_analysis("old.wav"), {}, audio=old, audio_name="old.wav")
    j = h.save(_analysis("new.wav"), {}, audio=new, audio_name="new.wav")
    with sqlite3.connect(h.path) as db:  # the first one was saved 40 days ago
        db.execute("UPDATE analyses SET created = datetime('now', 'localtime', '-40 days') WHERE id = ?", (i,))
    monkeypatch.delenv("SER_HISTORY_AUDIO_DAYS", raising=False)
    assert h.apply_retention() == 0  # no retention unless asked
    monkeypatch.setenv("SER_HISTORY_AUDIO_DAYS", "30")
    assert h.apply_retention() == 1
    assert h.get(i)[2] is None and h.get(j)[2] == new and len(h.list()) == 2
    assert not _on_disk(h, old[7000:7064]) and _on_disk(h, new[7000:7064])
    monkeypatch.setenv("SER_HISTORY_AUDIO_DAYS", "soon")
    with pytest.raises(DataError, match="number of days"):
        h.apply_retention()


def test_export_all_is_one_zip_with_every_analysis_and_kept_audio(tmp_path):
    import io
    import json
    import zipfile

    h = History(tmp_path / "h.sqlite")
    h.save(_analysis("../../etc/a.wav"), {"model": "m"})
    audio = _recording(5)
    h.save(_analysis("b.m4a"), {"model": "m"}, audio=audio, audio_name="b.m4a")
    z = zipfile.ZipFile(io.BytesIO(h.export_all()))
    names = sorted(z.namelist())
    assert names == ["00001-a.json", "00002-b.json", "00002-b.m4a"], names
    d = json.loads(z.read("00002-b.json"))
    assert d["settings"] == {"model": "m"} and d["analysis"]["name"] == "b.m4a"
    assert z.read("00002-b.m4a") == audio


def test_each_user_sees_and_deletes_only_their_own(tmp_path):
    h = History(tmp_path / "h.sqlite")
    a = h.save(_analysis("alice.wav"), {}, owner="alice", audio=_recording(6), audio_name="alice.wav")
    b = h.save(_analysis("bob.wav"), {}, owner="bob")
    assert [e.id for e in h.list("alice")] == [a] and [e.id for e in h.list("bob")] == [b]
    assert {e.owner for e in h.list()} == {"alice", "bob"}  # None: everyone's (an admin, or no sign-in)
    with pytest.raises(DataError):
        h.get(a, owner="bob")
    assert not h.delete(a, owner="bob") and h.stats("bob")["analyses"] == 1
    assert h.delete_all(owner="bob") == 1 and [e.id for e in h.list()] == [a]
    assert h.export_all(owner="bob") != h.export_all(owner="alice")
    assert h.find("ab" * 32, {}, owner="alice") == a and h.find("ab" * 32, {}, owner="dave") is None


def test_a_database_from_before_sign_in_gains_the_owner_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""CREATE TABLE analyses (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
            name TEXT NOT NULL, audio_sha256 TEXT NOT NULL, duration_s REAL NOT NULL, settings TEXT NOT NULL,
            result TEXT NOT NULL, audio BLOB, audio_name TEXT);""")
    h = History(path)
    i = h.save(_analysis(), {}, owner="carol")
    assert h.list()[0].owner == "carol" and h.get(i, owner="carol")
