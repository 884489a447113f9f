"""Saved analyses in a local SQLite database (WAL mode).

Each row holds the audio's SHA-256, the settings, the Analysis JSON, the time, and the
audio itself only when the user opted in. A row is written in one transaction after
the analysis has finished, so killing the app mid-analysis leaves nothing half-written.

The path: ``History(path)``, else ``$SER_HISTORY_DB``, else ``~/.cache/ser/history.sqlite``.

The user controls the data: :meth:`History.stats` says what is stored and where,
:meth:`History.export_all` packs everything into one ZIP, :meth:`History.delete` and
:meth:`History.delete_all` remove it from disk (deleted pages are zeroed, the file is
vacuumed and its write-ahead log truncated), and :meth:`History.apply_retention` drops kept
audio older than N days (``$SER_HISTORY_AUDIO_DAYS``, applied when the dashboard starts).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ser.analysis.result import Analysis
from ser.errors import DataError
from ser.serve.store import compact, connect, default_path, open_store

SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    name TEXT NOT NULL,
    audio_sha256 TEXT NOT NULL,
    duration_s REAL NOT NULL,
    settings TEXT NOT NULL,
    result TEXT NOT NULL,
    audio BLOB,
    audio_name TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS analyses_audio ON analyses (audio_sha256);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    created: str
    name: str
    audio_sha256: str
    duration_s: float
    settings: dict
    has_audio: bool
    speakers: int
    turns: int
    owner: str | None = None


def _add_owner_column(db: sqlite3.Connection) -> None:
    if "owner" not in {r[1] for r in db.execute("PRAGMA table_info(analyses)")}:
        db.execute("ALTER TABLE analyses ADD COLUMN owner TEXT")  # files from before sign-in


class History:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        open_store(self.path, SCHEMA, "history database", _add_owner_column)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def save(self, analysis: Analysis, settings: dict, *, audio: bytes | None = None,
             audio_name: str | None = None, owner: str | None = None) -> int:
        """Store a finished analysis (one transaction); returns its id. ``owner``: the signed-in user."""
        result = json.dumps(analysis.to_dict())
        sha = analysis.provenance.get("audio", {}).get("sha256", "")
        db = self._connect()
        try:
            with db:
                cur = db.execute(
                    "INSERT INTO analyses (created, name, audio_sha256, duration_s, settings, result, audio, audio_name,"
                    " owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.strftime("%Y-%m-%d %H:%M:%S"), analysis.name, sha, analysis.duration_s,
                     json.dumps(settings, sort_keys=True, default=str), result, audio, audio_name, owner))
                return int(cur.lastrowid)
        finally:
            db.close()

    def find(self, audio_sha256: str, settings: dict, owner: str | None = None) -> int | None:
        """The id of an analysis of this audio with exactly these settings, if saved (by ``owner``)."""
        where, args = self._mine(owner)
        db = self._connect()
        try:
            row = db.execute(f"SELECT id FROM analyses WHERE audio_sha256 = ? AND settings = ? AND {where} "
                             "ORDER BY id DESC", (audio_sha256, json.dumps(settings, sort_keys=True, default=str),
                                                  *args)).fetchone()
        finally:
            db.close()
        return int(row[0]) if row else None

    # Every reading and deleting method takes ``owner``: None means every user's rows (a
    # single-user dashboard, or an admin); a name restricts it to that user's rows.
    @staticmethod
    def _mine(owner: str | None) -> tuple[str, tuple]:
        return ("1", ()) if owner is None else ("owner = ?", (owner,))

    def list(self, owner: str | None = None) -> list[Entry]:
        where, args = self._mine(owner)
        db = self._connect()
        try:
            rows = db.execute("SELECT id, created, name, audio_sha256, duration_s, settings, audio IS NOT NULL, "
                              "json_array_length(result, '$.turns'), "
                              "(SELECT count(*) FROM json_each(result, '$.speakers')), owner "
                              f"FROM analyses WHERE {where} ORDER BY id DESC", args).fetchall()
        finally:
            db.close()
        return [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), bool(r[6]), int(r[8] or 0), int(r[7] or 0),
                      r[9]) for r in rows]

    def search(self, text: str, owner: str | None = None, limit: int = 500) -> list[dict]:
        """Lines of the saved transcripts that contain ``text`` (case-insensitive, Unicode case
        folding), newest analysis first: ``{"id", "name", "start_s", "end_s", "speaker", "text"}``."""
        q = text.strip().casefold()
        if not q:
            return []
        where, args = self._mine(owner)
        db = self._connect()
        try:
            rows = db.execute(f"SELECT id, name, json_extract(result, '$.utterances') FROM analyses WHERE {where} "
                              "ORDER BY id DESC", args).fetchall()
        finally:
            db.close()
        out = []
        for entry_id, name, utts in rows:
            for u in json.loads(utts or "[]"):
                if q in str(u.get("text", "")).casefold():
                    out.append({"id": entry_id, "name": name, "start_s": u["start_s"], "end_s": u["end_s"],
                                "speaker": u.get("speaker"), "text": u["text"]})
                    if len(out) >= limit:
                        return out
        return out

    def voice_rows(self, owner: str | None = None) -> list[dict]:
        """Per saved analysis (of ``owner``) in time order, each named voice's talk time, turns and
        emotion mix (``ser.serve.voices.voice_rows``) with the analysis's id, time and name."""
        from ser.serve.voices import voice_rows

        where, args = self._mine(owner)
        db = self._connect()
        try:
            rows = db.execute(f"SELECT id, created, name, result FROM analyses WHERE {where} AND "
                              "json_extract(result, '$.provenance.voices') IS NOT NULL ORDER BY created, id",
                              args).fetchall()
        finally:
            db.close()
        return [{"id": i, "created": c, "recording": n, **r} for i, c, n, res in rows for r in voice_rows(json.loads(res))]

    def get(self, entry_id: int, owner: str | None = None) -> tuple[Analysis, dict, bytes | None]:
        where, args = self._mine(owner)
        db = self._connect()
        try:
            row = db.execute(f"SELECT result, settings, audio FROM analyses WHERE id = ? AND {where}",
                             (entry_id, *args)).fetchone()
        finally:
            db.close()
        if row is None:
            raise DataError(f"No saved analysis with id {entry_id}.")
        return Analysis.from_dict(json.loads(row[0])), json.loads(row[1]), row[2]

    def delete(self, entry_id: int, owner: str | None = None) -> bool:
        where, args = self._mine(owner)
        db = self._connect()
        try:
            with db:
                gone = db.execute(f"DELETE FROM analyses WHERE id = ? AND {where}", (entry_id, *args)).rowcount > 0
        finally:
            db.close()
        if gone:
            self._compact()
        return gone

    def delete_all(self, owner: str | None = None) -> int:
        """Remove every saved analysis (of ``owner``) and its audio from disk, and the voices
        ``owner`` enrolled (ser.serve.voices; ``None``: everybody's); returns how many analyses."""
        from ser.serve.voices import VoiceLibrary

        where, args = self._mine(owner)
        db = self._connect()
        try:
            with db:
                n = db.execute(f"DELETE FROM analyses WHERE {where}", args).rowcount
        finally:
            db.close()
        VoiceLibrary(self.path).delete_all(owner, everyone=owner is None)  # compacts the file too
        return n

    def apply_retention(self, audio_days: float | None = None) -> int:
        """Drop kept audio older than ``audio_days`` (default ``$SER_HISTORY_AUDIO_DAYS``; unset: keep
        it); the analyses stay. Returns how many recordings were dropped."""
        if audio_days is None:
            env = os.environ.get("SER_HISTORY_AUDIO_DAYS", "").strip()
            if not env:
                return 0
            try:
                audio_days = float(env)
            except ValueError as exc:
                raise DataError(f"$SER_HISTORY_AUDIO_DAYS must be a number of days (got {env!r}).") from exc
        cutoff = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - audio_days * 86400))
        db = self._connect()
        try:
            with db:
                n = db.execute("UPDATE analyses SET audio = NULL WHERE audio IS NOT NULL AND created < ?",
                               (cutoff,)).rowcount
        finally:
            db.close()
        if n:
            self._compact()
        return n

    def _compact(self) -> None:
        compact(self.path)

    def stats(self, owner: str | None = None) -> dict:
        """What is stored (of ``owner``) and where: counts, bytes of kept audio, the database's files
        and their size (the whole file, every user's rows)."""
        where, args = self._mine(owner)
        db = self._connect()
        try:
            n, with_audio, audio_bytes = db.execute(
                f"SELECT count(*), count(audio), coalesce(sum(length(audio)), 0) FROM analyses WHERE {where}",
                args).fetchone()
        finally:
            db.close()
        files = [p for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")) if p.exists()]
        return {"path": str(self.path), "analyses": int(n), "with_audio": int(with_audio),
                "audio_bytes": int(audio_bytes), "files": [str(p) for p in files],
                "disk_bytes": sum(p.stat().st_size for p in files)}

    def export_all(self, owner: str | None = None) -> bytes:
        """Every saved analysis (of ``owner``) as a ZIP: ``<id>-<name>.json`` (analysis and settings)
        and the kept audio, and ``voices.json``: the voices ``owner`` enrolled, embeddings included."""
        import io
        import zipfile

        from ser.serve.batch import safe_stem

        buf = io.BytesIO()
        db = self._connect()
        try:
            where, args = self._mine(owner)
            rows = db.execute("SELECT id, created, name, settings, result, audio, audio_name FROM analyses "
                              f"WHERE {where} ORDER BY id", args).fetchall()
        finally:
            db.close()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for id_, created, name, settings, result, audio, audio_name in rows:
                stem = f"{id_:05d}-{safe_stem(Path(name).stem or 'analysis')}"
                z.writestr(f"{stem}.json", json.dumps({"id": id_, "created": created,
                                                       "settings": json.loads(settings),
                                                       "analysis": json.loads(result)}, indent=1))
                if audio is not None:
                    z.writestr(f"{stem}{Path(audio_name or name).suffix or '.wav'}", audio)
            from ser.serve.voices import VoiceLibrary

            voices = VoiceLibrary(self.path).export(owner, everyone=owner is None)
            if voices:
                z.writestr("voices.json", json.dumps({"what": "speaker embeddings (CAM++, 192-d) of the voices "
                                                      "enrolled; biometric data", "voices": voices}, indent=1))
        return buf.getvalue()

    def check(self) -> str:
        """SQLite's integrity check ("ok" when the file is sound)."""
        db = self._connect()
        try:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            db.close()
