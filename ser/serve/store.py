"""The local database file that History and the voice library share: where it is, and that it
is private to its owner."""

from __future__ import annotations

import os
from pathlib import Path


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
