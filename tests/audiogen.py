"""Generated audio for tests: seeded signals written in every format the door accepts."""

from __future__ import annotations

import io
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
    data = np.repeat(y[:, None], channels, axis=1) if channels > 1 else y
    if fmt in ("wav", "flac", "ogg", "mp3"):
        import soundfile as sf

        buf = io.BytesIO()
        kw = {"wav": ("WAV", subtype or "PCM_16"), "flac": ("FLAC", subtype or "PCM_16"),
              "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}[fmt]
        sf.write(buf, data, sr, format=kw[0], subtype=kw[1])
        return buf.getvalue()
    return _encode_pyav(data, sr, fmt, channels)


def _encode_pyav(data: np.ndarray, sr: int, fmt: str, channels: int) -> bytes:
    import av

    container_fmt, codec = {"m4a": ("ipod", "aac"), "webm": ("webm", "libopus"),
                            "aac": ("adts", "aac"), "opus": ("ogg", "libopus")}[fmt]
    rate = 48_000 if codec == "libopus" and sr not in (8000, 12000, 16000, 24000, 48000) else sr
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        planar = np.ascontiguousarray((data.T if data.ndim == 2 else data[None, :]).astype(np.float32))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
        frame.sample_rate = sr
        resampler = av.AudioResampler(format=stream.format.name, layout=stream.layout.name, rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


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
    from ser.audio import load_audio

    return load_audio(wav, sr=sr).y
