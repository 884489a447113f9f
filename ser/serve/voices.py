"""The voice library: named voices, per user, in the History database (never audio).

A voice is a name and one or more *samples*: a 192-d CAM++ embedding (768 bytes), the
seconds of speech it came from and where it came from ("clip maria.wav", "turns of
SPEAKER_01 in session3.wav"). Identification (``ser.diarization.voices``) compares a
speaker with each voice's centroid: the mean of its samples, weighted by their speech (up
to 30 s each). Voice names are per user: the same name can exist for two users, and one
user never reads, changes or deletes another's voices (``owner``; ``None`` is the
single-user dashboard and the command line).

These embeddings are biometric data (docs/privacy.md): they live beside History in the
same 0600 file, go into History's export-all and go with its delete-all.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.diarization.voices import Voice, check_name, unit
from ser.errors import ConfigError, DataError
from ser.serve.store import compact, connect, default_path, open_store

DIM = 192
SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (owner, name)
);
CREATE TABLE IF NOT EXISTS voice_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    voice_id INTEGER NOT NULL REFERENCES voices(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    seconds REAL NOT NULL,
    source TEXT NOT NULL,
    created TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    created: str
    samples: int
    seconds: float
    sources: list[str]


def _owner(owner: str | None) -> str:
    return "" if owner is None else str(owner)


class VoiceLibrary:
    """Named voices in ``path`` (default: the History database, ``$SER_HISTORY_DB``)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        open_store(self.path, SCHEMA, "voice library")

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def _id(self, db: sqlite3.Connection, name: str, owner: str | None) -> int | None:
        row = db.execute("SELECT id FROM voices WHERE owner = ? AND name = ?", (_owner(owner), name)).fetchone()
        return int(row[0]) if row else None

    def add(self, name: str, samples: list[tuple[np.ndarray, float, str]], owner: str | None = None) -> VoiceInfo:
        """Enrol ``name`` (created if new) from ``samples``: ``(embedding, seconds, source)``."""
        name = check_name(name)
        if not samples:
            raise ConfigError(f"Nothing to enrol {name!r} from.")
        rows = []
        for vec, seconds, source in samples:
            v = np.asarray(vec, np.float32).reshape(-1)
            if v.shape != (DIM,) or not np.isfinite(v).all() or np.linalg.norm(v) < 1e-6:
                raise ConfigError(f"A voice sample must be a {DIM}-d speaker embedding.")
            rows.append((unit(v).tobytes(), float(seconds), str(source)[:300]))
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        db = self._connect()
        try:
            with db:
                vid = self._id(db, name, owner)
                if vid is None:
                    vid = int(db.execute("INSERT INTO voices (owner, name, created) VALUES (?, ?, ?)",
                                         (_owner(owner), name, now)).lastrowid)
                db.executemany("INSERT INTO voice_samples (voice_id, vector, seconds, source, created) "
                               "VALUES (?, ?, ?, ?, ?)", [(vid, b, s, src, now) for b, s, src in rows])
        finally:
            db.close()
        return self.info(name, owner)

    def list(self, owner: str | None = None) -> list[VoiceInfo]:
        db = self._connect()
        try:
            rows = db.execute("SELECT v.name, v.created, count(s.id), coalesce(sum(s.seconds), 0), "
                              "json_group_array(s.source) FROM voices v LEFT JOIN voice_samples s ON s.voice_id = v.id "
                              "WHERE v.owner = ? GROUP BY v.id ORDER BY v.name COLLATE NOCASE",
                              (_owner(owner),)).fetchall()
        finally:
            db.close()
        return [VoiceInfo(r[0], r[1], int(r[2]), float(r[3]), [s for s in json.loads(r[4]) if s is not None])
                for r in rows]

    def info(self, name: str, owner: str | None = None) -> VoiceInfo:
        for v in self.list(owner):
            if v.name == name:
                return v
        raise DataError(f"No voice named {name!r} in the library.")

    def voices(self, owner: str | None = None) -> list[Voice]:
        """Every voice of ``owner`` with its centroid, for ``ser.diarization.voices.identify``."""
        db = self._connect()
        try:
            rows = db.execute("SELECT v.name, s.vector, s.seconds FROM voices v JOIN voice_samples s "
                              "ON s.voice_id = v.id WHERE v.owner = ? ORDER BY v.name, s.id",
                              (_owner(owner),)).fetchall()
        finally:
            db.close()
        by: dict[str, list[tuple[np.ndarray, float]]] = {}
        for name, blob, seconds in rows:
            v = np.frombuffer(blob, np.float32)
            if v.shape == (DIM,) and np.isfinite(v).all():
                by.setdefault(name, []).append((v, float(seconds)))
        out = []
        for name, samples in by.items():
            w = np.array([min(max(s, 0.5), 30.0) for _, s in samples])
            c = (np.stack([v for v, _ in samples]) * w[:, None]).sum(0)
            out.append(Voice(name, unit(c), float(sum(s for _, s in samples)), len(samples)))
        return out

    def rename(self, old: str, new: str, owner: str | None = None) -> None:
        new = check_name(new)
        db = self._connect()
        try:
            with db:
                vid = self._id(db, old, owner)
                if vid is None:
                    raise DataError(f"No voice named {old!r} in the library.")
                if new != old and self._id(db, new, owner) is not None:
                    raise ConfigError(f"A voice named {new!r} exists already; merge the two instead.")
                db.execute("UPDATE voices SET name = ? WHERE id = ?", (new, vid))
        finally:
            db.close()

    def merge(self, source: str, into: str, owner: str | None = None) -> VoiceInfo:
        """Move every sample of ``source`` to ``into`` (the same person enrolled twice) and delete ``source``."""
        if source == into:
            raise ConfigError("Merge two different voices.")
        db = self._connect()
        try:
            with db:
                a, b = self._id(db, source, owner), self._id(db, into, owner)
                if a is None or b is None:
                    raise DataError(f"No voice named {(source if a is None else into)!r} in the library.")
                db.execute("UPDATE voice_samples SET voice_id = ? WHERE voice_id = ?", (b, a))
                db.execute("DELETE FROM voices WHERE id = ?", (a,))
        finally:
            db.close()
        return self.info(into, owner)

    def delete(self, name: str, owner: str | None = None) -> bool:
        db = self._connect()
        try:
            with db:
                gone = db.execute("DELETE FROM voices WHERE owner = ? AND name = ?", (_owner(owner), name)).rowcount > 0
        finally:
            db.close()
        if gone:
            self._compact()
        return gone

    def delete_all(self, owner: str | None = None, *, everyone: bool = False) -> int:
        """Delete ``owner``'s voices (``everyone``: every user's) and compact the file."""
        db = self._connect()
        try:
            with db:
                ids = [r[0] for r in (db.execute("SELECT id FROM voices") if everyone else
                                      db.execute("SELECT id FROM voices WHERE owner = ?", (_owner(owner),)))]
                db.executemany("DELETE FROM voices WHERE id = ?", [(i,) for i in ids])
        finally:
            db.close()
        self._compact()
        return len(ids)

    def _compact(self) -> None:
        compact(self.path)

    def export(self, owner: str | None = None, *, everyone: bool = False) -> list[dict]:
        """Every voice with its samples (embeddings as lists of floats), for export-all."""
        db = self._connect()
        try:
            q = ("SELECT v.owner, v.name, v.created, s.vector, s.seconds, s.source, s.created FROM voices v "
                 "JOIN voice_samples s ON s.voice_id = v.id ")
            rows = (db.execute(q + "ORDER BY v.owner, v.name, s.id") if everyone else
                    db.execute(q + "WHERE v.owner = ? ORDER BY v.name, s.id", (_owner(owner),))).fetchall()
        finally:
            db.close()
        out: dict[tuple[str, str], dict] = {}
        for own, name, created, blob, seconds, source, s_created in rows:
            d = out.setdefault((own, name), {"name": name, "created": created, "samples": [],
                                             **({"owner": own or None} if everyone else {})})
            d["samples"].append({"embedding": [round(float(x), 6) for x in np.frombuffer(blob, np.float32)],
                                 "seconds": round(seconds, 2), "source": source, "created": s_created})
        return list(out.values())


VOICE_FIELDS = ["voice", "talk_s", "turns", "share_of_speech", "top_emotion", "similarity"]


def voice_rows(analysis: dict) -> list[dict]:
    """Per named voice of one analysis (``Analysis.to_dict()``): talk time, turns, share of all
    speech, the emotion mix (duration-weighted mean probability of its scored turns, ``p_<label>``)
    and how well it matched. Anonymous and uncertain speakers are left out."""
    prov = analysis.get("provenance", {}) or {}
    ident = prov.get("voices") or {}
    named = {m["voice"]: m for m in ident.get("speakers", []) if m.get("status") in ("named", "merged") and m.get("voice")}
    if not named:
        return []
    turns = analysis.get("turns", [])
    total = sum(t["end_s"] - t["start_s"] for t in turns) or 1.0
    rows = []
    for name in sorted(named):
        mine = [t for t in turns if t["speaker"] == name]
        segs = [s for s in analysis.get("segments", []) if s.get("speaker") == name]
        mix: dict[str, float] = {}
        w = sum(s["end_s"] - s["start_s"] for s in segs)
        for s in segs:
            for k, p in s["probabilities"].items():
                mix[k] = mix.get(k, 0.0) + p * (s["end_s"] - s["start_s"]) / w
        talk = sum(t["end_s"] - t["start_s"] for t in mine)
        best = max((m["score"] for m in ident["speakers"] if m.get("voice") == name and m.get("status") == "named"
                    and m.get("score") is not None), default=None)
        rows.append({"voice": name, "talk_s": round(talk, 2), "turns": len(mine), "share_of_speech": round(talk / total, 4),
                     "top_emotion": max(mix, key=mix.get) if mix else "", "similarity": best,
                     **{f"p_{k}": round(v, 4) for k, v in mix.items()}})
    return rows


def enrol_clips(library: VoiceLibrary, name: str, clips: list[tuple[object, str]], owner: str | None = None,
                limits=None) -> VoiceInfo:
    """Enrol ``name`` from clips of that one person: ``(path, bytes or file object; file name)``
    each through the audio door, then :func:`ser.diarization.voices.clip_vector`. An error says
    which clip. The one enrolment path of the CLI, the API and the Known voices page."""
    from ser.audio.decode import load_audio
    from ser.diarization.voices import clip_vector
    from ser.errors import SERError

    name = check_name(name)
    if not clips:
        raise ConfigError("Choose at least one clip.")
    samples = []
    for src, fname in clips:
        audio = load_audio(src, name=fname) if limits is None else load_audio(src, name=fname, limits=limits)
        try:  # the door's own messages name the file already
            vec, seconds = clip_vector(audio.y, audio.sr)
        except SERError as exc:
            raise type(exc)(f"{fname}: {exc}") from exc
        samples.append((vec, seconds, f"clip {fname}"))
    return library.add(name, samples, owner=owner)
