"""The local database file that History and the voice library share: where it is, and that it
is private to its owner."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ser.errors import DataError


def default_path() -> Path:
    env = os.environ.get("SER_HISTORY_DB")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ser" / "history.sqlite"


def private_file(path: Path) -> None:
    """The database (which can hold people's voices) readable by its owner alone: a folder this
    creates is 0700 (so is ser's own ~/.cache/ser), the file 0600 (SQLite gives its -wal and -shm
    files the same mode). A folder you chose yourself keeps its mode."""
    import contextlib

    folder = path.parent
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if created or folder == Path.home() / ".cache" / "ser":
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            if p.exists() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the store's settings: deleted content overwritten (not left in free
    pages), write-ahead log, foreign keys enforced."""
    db = sqlite3.connect(path, timeout=10)
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def open_store(path: Path, schema: str, what: str, migrate=None) -> None:
    """Create ``path`` private to its owner and its tables (``schema``; then ``migrate(db)``);
    a clear DataError naming ``what`` when it cannot be opened."""
    try:
        private_file(path)
        with connect(path) as db:
            db.executescript(schema)
            if migrate is not None:
                migrate(db)
    except (OSError, sqlite3.Error) as exc:
        raise DataError(f"Cannot open the {what} {path}: {exc}. Set $SER_HISTORY_DB to a writable file.") from exc


def compact(path: Path) -> None:
    """Give freed space back to the file system: vacuum, then truncate the write-ahead log."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
