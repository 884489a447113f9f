"""The one door for audio.

Whatever a person brings — a path, raw bytes, an upload, a browser recording — goes
through :func:`load_audio` and comes out as mono float32 at the analysis rate
(16 kHz by default). Everything downstream receives ``(y, sr)``.

Decoding tries libsndfile first (WAV 8/16/24/32-bit and float, FLAC, OGG/Vorbis,
Opus in OGG, MP3) and falls back to PyAV, whose wheels carry their own FFmpeg
(M4A/AAC, WebM/Opus, MP3 and the rest), so no system ffmpeg is needed. Channels are
averaged and the signal is resampled with soxr in a streaming fashion, so a two-hour
48 kHz stereo file never exists in memory at full resolution.

Example::

    from ser.audio import load_audio
    audio = load_audio("clip.m4a")          # Audio(y=..., sr=16000, ...)
    y, sr = audio.y, audio.sr
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from ser.errors import AudioError

#: The analysis rate of every ``ser`` model and feature.
SAMPLE_RATE = 16_000

#: Source rates outside this range are rejected (telephone to high-resolution audio).
MIN_SOURCE_SR = 8_000
MAX_SOURCE_SR = 192_000

#: Extensions we advertise (the decoders accept more).
SUPPORTED_FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "m4a", "aac", "webm")

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

_BLOCK_FRAMES = 1 << 16  # frames decoded per block when streaming


@dataclass(frozen=True)
class AudioLimits:
    """What :func:`load_audio` accepts. Every field can be overridden per call."""

    # shortest signal accepted, in seconds (models set their own minimum)
    min_duration_s: float = 0.5
    # longest signal accepted, in seconds (default two hours)
    max_duration_s: float = 2 * 3600.0
    # largest encoded input accepted, in bytes
    max_bytes: int = 2 * 1024**3
    # a signal whose peak stays below this level (dBFS) counts as digital silence
    silence_dbfs: float = -80.0
    # float audio's nominal range is ±1; a peak above this (+40 dBFS) is a damaged file, not a loud one
    max_peak: float = 100.0


DEFAULT_LIMITS = AudioLimits()


@dataclass(frozen=True)
class Audio:
    """A decoded, validated signal: mono float32 ``y`` (n,) at ``sr`` Hz."""

    y: np.ndarray = field(repr=False)
    sr: int
    source_sr: int
    source_channels: int
    codec: str
    name: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.y) / self.sr

    def content_hash(self) -> str:
        """SHA-256 of the decoded samples: identical audio, identical key."""
        return hashlib.sha256(memoryview(np.ascontiguousarray(self.y)).cast("B")).hexdigest()  # no copy


def load_audio(
    source: AudioSource,
    *,
    sr: int = SAMPLE_RATE,
    limits: AudioLimits = DEFAULT_LIMITS,
    name: str | None = None,
) -> Audio:
    """Decode, validate, down-mix and resample ``source`` to mono float32 at ``sr``.

    ``source`` is a path, bytes-like object, or binary file-like object. ``name``
    (e.g. an upload's file name) is used in error messages only.

    Raises :class:`~ser.errors.AudioError` with an actionable message for an empty,
    missing, oversized, undecodable, truncated, non-finite, silent, too short or
    too long input.
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the audio")
    src = _read_source(source, label, limits.max_bytes)
    audio = _decode(src, label, sr, limits)
    _validate_signal(audio.y, sr, label, limits)
    return Audio(
        y=audio.y, sr=sr, source_sr=audio.source_sr, source_channels=audio.source_channels,
        codec=audio.codec, name=name or (Path(label).name if label != "the audio" else ""),
    )


@dataclass(frozen=True)
class _Source:
    """Encoded input: either a path on disk (decoded without reading it whole) or bytes."""

    path: Path | None
    data: bytes | None
    size: int

    def open(self) -> BinaryIO:
        return open(self.path, "rb") if self.path is not None else io.BytesIO(self.data)

    def head(self, n: int = 1 << 16) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as f:
            return f.read(n)


def _read_source(source: AudioSource, label: str, max_bytes: int) -> _Source:
    limit_msg = (
        f"{label} is larger than the {_fmt_bytes(max_bytes)} limit; "
        "cut it into shorter parts or raise the limit (AudioLimits.max_bytes)."
    )
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{label} does not exist; check the path.")
        if path.is_dir():
            raise AudioError(f"{label} is a folder, not an audio file.")
        size = path.stat().st_size
        if size == 0:
            raise AudioError(f"{label} is empty (0 bytes); record or export the audio again.")
        if size > max_bytes:
            raise AudioError(limit_msg)
        return _Source(path, None, size)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if isinstance(data, str):
            raise AudioError(f"{label} was opened in text mode; open it with 'rb'.")
    else:
        raise AudioError(
            f"Cannot read audio from a {type(source).__name__}; "
            "pass a file path, bytes, or a binary file object."
        )
    if len(data) == 0:
        raise AudioError(f"{label} is empty (0 bytes); record or upload the audio again.")
    if len(data) > max_bytes:
        raise AudioError(limit_msg)
    return _Source(None, data, len(data))


@dataclass(frozen=True)
class _Decoded:
    y: np.ndarray
    source_sr: int
    source_channels: int
    codec: str


def _decode(src: _Source, label: str, sr: int, limits: AudioLimits) -> _Decoded:
    sf_error: Exception | None = None
    try:
        return _decode_soundfile(src, label, sr, limits)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile cannot read it: let FFmpeg try
        sf_error = exc
    try:
        return _decode_pyav(src, label, sr, limits)
    except AudioError:
        raise
    except Exception as exc:
        kind = _sniff_non_audio(src.head(4096))
        what = f"it looks like {kind}, not audio" if kind else "it is corrupt, truncated, or not an audio file"
        raise AudioError(
            f"{label} could not be decoded: {what}"
            + (f" (decoder said: {said})" if (said := _short(exc) or _short(sf_error)) else "")
            + f". Supported formats: {', '.join(SUPPORTED_FORMATS)}."
        ) from exc


_MAGIC = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x7fELF", "a program"),
)


def _sniff_non_audio(data: bytes) -> str:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    # valid UTF-8 is not enough: a binary header full of zero bytes decodes too
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return ""
    return "a text file"


_INTERNAL = (AttributeError, TypeError, KeyError, IndexError, NameError, AssertionError)


def _short(exc: Exception | None) -> str:
    """The first line of a decoder's message; nothing for an error of Python itself (``'AudioStream'
    object has no attribute 'rate'`` says nothing to a user and names our internals)."""
    import re

    if isinstance(exc, _INTERNAL):
        return ""
    text = str(exc or "").strip().splitlines()
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text[0])[:160] if text else ""


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


_WAV_UNKNOWN_SIZE = 0x7FFFF000  # placeholders written by streaming writers: 0x7FFFFFFF, 0xFFFFFFFF


def _wav_data_chunk(data: bytes) -> tuple[int, int] | None:
    """(offset, declared size) of a RIFF/WAVE file's ``data`` chunk; None when not WAV or not found."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, chunk_size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk_id == b"data":
            return pos, chunk_size
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


def _wav_streamed(chunk: tuple[int, int] | None) -> bool:
    """The ``data`` size is a placeholder: the writer did not know the length (espeak-ng, ffmpeg pipes)."""
    return chunk is not None and (chunk[1] == 0 or chunk[1] >= _WAV_UNKNOWN_SIZE)


def _wav_missing_bytes(chunk: tuple[int, int] | None, size: int) -> int:
    """How many bytes of the ``data`` chunk the header promises but the file lacks
    (0 when complete, streamed with an unknown size, or not WAV)."""
    if chunk is None or _wav_streamed(chunk):
        return 0
    pos, declared = chunk
    return max(0, declared - (size - pos - 8))


def _check_rate(source_sr: int, label: str) -> None:
    if not MIN_SOURCE_SR <= source_sr <= MAX_SOURCE_SR:
        raise AudioError(
            f"{label} has a sample rate of {source_sr} Hz; rates from {MIN_SOURCE_SR} "
            f"to {MAX_SOURCE_SR} Hz are supported. Resample it (e.g. to 16000 Hz) first."
        )


def _check_duration(duration_s: float, label: str, limits: AudioLimits) -> None:
    if duration_s > limits.max_duration_s:
        raise AudioError(
            f"{label} is {_fmt_duration(duration_s)} long; the limit is "
            f"{_fmt_duration(limits.max_duration_s)}. Split it into shorter parts "
            "or raise the limit (AudioLimits.max_duration_s)."
        )


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


class _Resampler:
    """Streaming down-mix + resample of (frames, channels) blocks to mono ``sr``."""

    def __init__(self, source_sr: int, sr: int):
        import soxr

        self._stream = None if source_sr == sr else soxr.ResampleStream(
            source_sr, sr, 1, dtype="float32", quality="HQ"
        )
        self._parts: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:  # block: (frames, channels)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf samples are reported after decoding
            mono = (block.mean(axis=1, dtype=np.float64) if block.ndim == 2 else block).astype(np.float32)
        if self._stream is None:
            self._parts.append(mono)
        else:
            self._parts.append(self._stream.resample_chunk(mono, last=False))

    def finish(self) -> np.ndarray:
        if self._stream is not None:
            self._parts.append(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        if not self._parts:
            return np.zeros(0, np.float32)
        return np.concatenate(self._parts).astype(np.float32, copy=False)


def _decode_soundfile(src: _Source, label: str, sr: int, limits: AudioLimits) -> _Decoded:
    import soundfile as sf

    with src.open() as raw, sf.SoundFile(_QuietSeeks(raw)) as f:
        source_sr, channels, frames = f.samplerate, f.channels, f.frames
        _check_rate(source_sr, label)
        if frames > 0:
            _check_duration(frames / source_sr, label, limits)
        resampler = _Resampler(source_sr, sr)
        read = 0
        max_frames = int(limits.max_duration_s * source_sr) + 1
        while True:
            block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            read += len(block)
            if read > max_frames:
                _check_duration(read / source_sr, label, limits)
            resampler.push(block)
        codec = f"{f.format}/{f.subtype}".lower()
    chunk = _wav_data_chunk(src.head())
    missing = _wav_missing_bytes(chunk, src.size)
    if (frames > 0 and read < frames and not _wav_streamed(chunk)) or missing:
        if missing:
            frames = read + missing // _bytes_per_frame(codec, channels)
        raise AudioError(
            f"{label} is truncated: its header announces {frames / source_sr:.2f} s but "
            f"only {read / source_sr:.2f} s could be read. Export or download it again."
        )
    return _Decoded(resampler.finish(), source_sr, channels, codec)


class _QuietSeeks:
    """A binary file for libsndfile whose seek and read never raise.

    soundfile calls them from C callbacks, where a Python exception cannot propagate: a
    damaged header asking for a negative position printed a traceback on stderr ("Exception
    ignored from cffi callback") while the file was refused. A refused seek leaves the
    position where it was, as fseek does; the decoder then finds the file corrupt.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._raw.seek(offset, whence)
        except (ValueError, OSError, OverflowError):
            return self._raw.tell()

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, n: int = -1) -> bytes:
        try:
            return self._raw.read(n)
        except (ValueError, OSError, OverflowError, MemoryError):
            return b""


def _bytes_per_frame(codec: str, channels: int) -> int:
    width = {"pcm_u8": 1, "pcm_s8": 1, "pcm_16": 2, "pcm_24": 3, "pcm_32": 4, "float": 4,
             "double": 8, "ulaw": 1, "alaw": 1}.get(codec.split("/")[-1], 2)
    return width * channels


def _decode_pyav(src: _Source, label: str, sr: int, limits: AudioLimits) -> _Decoded:
    import av

    raw = src.open()
    try:
        container = av.open(raw, mode="r")
    except av.error.FFmpegError as exc:
        raw.close()
        raise RuntimeError(str(exc)) from exc
    with raw, container:
        if not container.streams.audio:
            raise AudioError(
                f"{label} contains no audio stream (it may be an image, a video without "
                "sound, or another kind of file). Upload an audio recording."
            )
        stream = container.streams.audio[0]
        source_sr = stream.rate or stream.codec_context.sample_rate
        channels = stream.channels or 1
        _check_rate(source_sr, label)
        if container.duration:  # microseconds, from the container header
            _check_duration(container.duration / 1_000_000, label, limits)
        # packed (interleaved) float, rate and layout kept: one buffer per frame whatever the channel
        # count (PyAV's planar to_ndarray reads past its plane pointers at 8+ channels and segfaults)
        to_float = av.AudioResampler(format="flt")
        resampler = _Resampler(source_sr, sr)
        max_frames = int(limits.max_duration_s * source_sr) + 1
        read = 0
        try:
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    block = _packed(out)
                    read += len(block)
                    if read > max_frames:
                        _check_duration(read / source_sr, label, limits)
                    resampler.push(block)
        except av.error.FFmpegError as exc:
            if read == 0:
                raise RuntimeError(str(exc)) from exc
            raise AudioError(
                f"{label} is corrupt or truncated after {read / source_sr:.2f} s "
                f"({_short(exc)}). Export or download it again."
            ) from exc
        for out in to_float.resample(None):
            resampler.push(_packed(out))
        codec = stream.codec_context.name
        declared_s = (container.duration or 0) / 1_000_000
    if read == 0:
        raise RuntimeError("no audio frames could be decoded")
    if declared_s and read / source_sr < 0.9 * declared_s - 0.1:
        raise AudioError(
            f"{label} is truncated: its header announces {declared_s:.2f} s but only "
            f"{read / source_sr:.2f} s could be decoded. Export or download it again."
        )
    return _Decoded(resampler.finish(), source_sr, channels, codec)


def _packed(frame) -> np.ndarray:
    """(n, channels) float32 from a packed-float PyAV frame."""
    channels = max(1, len(frame.layout.channels))
    return frame.to_ndarray().reshape(-1, channels)


def _validate_signal(y: np.ndarray, sr: int, label: str, limits: AudioLimits) -> None:
    if y.size == 0:
        raise AudioError(f"{label} holds no audio samples; record or export it again.")
    check_samples(y, label, max_peak=limits.max_peak)
    duration = len(y) / sr
    if duration < limits.min_duration_s:
        raise AudioError(
            f"{label} is {duration:.2f} s long; at least {limits.min_duration_s:.2f} s "
            "is needed. Record a longer clip."
        )
    _check_duration(duration, label, limits)
    peak = float(np.abs(y).max())
    if peak <= 10 ** (limits.silence_dbfs / 20):
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        raise AudioError(
            f"{label} is digital silence (peak level {level} dBFS); check that the "
            "microphone is connected and unmuted, then record again."
        )


def check_samples(y: np.ndarray, label: str = "the audio", *, max_peak: float = DEFAULT_LIMITS.max_peak) -> None:
    """Raise :class:`AudioError` unless every sample is finite and within ``±max_peak``.

    Called by the audio door and again at the model boundary, so that no probability the
    product emits can be NaN, whatever path the samples took.
    """
    if y.size == 0:
        return
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y)).sum())
        raise AudioError(
            f"{label} contains {bad} invalid samples (NaN or infinity); the file is "
            "damaged — export it again as 16-bit PCM."
        )
    peak = float(np.abs(y).max())
    if peak > max_peak:
        raise AudioError(
            f"{label} has sample values up to {peak:.3g}, far outside the ±1.0 range of audio "
            f"(the limit is ±{max_peak:g}); the file is damaged or not a float recording. "
            "Export it again as 16-bit PCM."
        )


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float signal with soxr (high quality)."""
    if orig_sr == target_sr:
        return y.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(y.astype(np.float32, copy=False), orig_sr, target_sr, quality="HQ").astype(np.float32)
