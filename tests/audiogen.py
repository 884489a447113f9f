"""Generated audio for tests: seeded signals written in every format the door accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tone(duration_s: float = 1.0, sr: int = 16_000, freq: float = 220.0, amp: float = 0.3,
         seed: int = 0) -> np.ndarray:
    """A voiced-like harmonic tone with a little noise: (n,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sr)) / sr
    y = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 6))
    y = y + 0.01 * rng.standard_normal(len(t))
    return (y / np.abs(y).max() * amp).astype(np.float32)


def encode(y: np.ndarray, sr: int, fmt: str, *, channels: int = 1, subtype: str | None = None) -> bytes:
    """Encode ``y`` (mono) as ``fmt`` with ``channels`` identical channels; returns the bytes."""
    from ser.audio.fuzz import encode as _encode

    return _encode(y, sr, fmt, channels=channels, subtype=subtype)


def write(path: Path, y: np.ndarray, sr: int, fmt: str, **kw) -> Path:
    path.write_bytes(encode(y, sr, fmt, **kw))
    return path


def speak(text: str, voice: str = "en-us+m3", *, pitch: int = 50, speed: int = 150, sr: int = 16_000) -> np.ndarray:
    """Real synthesised speech from espeak-ng (installed by scripts/setup.sh), as mono float32 at ``sr``.

    Silero-VAD detects it as speech and resemblyzer tells the voices apart, which tones cannot do.
    """
    import shutil
    import subprocess

    import pytest

    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (scripts/setup.sh installs it from Debian)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    from ser.audio.decode import load_audio

    return load_audio(wav, sr=sr).y
