"""Channel and room augmentation of a clip: what a user's microphone, room and codec do to a voice.

Each call of :func:`channel_augment` draws one chain (seeded by the generator passed in):

- **reverberation** (p 0.5): a synthetic room impulse response — exponentially decaying
  noise with an RT60 of 0.15–0.8 s and a direct-path spike, mixed at a random
  direct-to-reverberant ratio;
- **band-limiting** (p 0.3): a telephone band (resampled through 8 kHz, 300–3400 Hz), or
  a low-pass at 4–7 kHz (cheap microphones, laptop DSP);
- **codec round trip** (p 0.3): MP3 at 32–64 kbit/s, Opus or AAC, through PyAV/libsndfile
  and back through the audio door;
- **noise** (p 0.5): white, pink or brown noise at 5–30 dB SNR;
- **loudness**: −20 to +6 dB, clipped at full scale like a real recorder.

The training recipe (``ser train --augment K``) encodes K such copies of every training clip
besides the clean one. Nothing here needs a file or a download.
"""

from __future__ import annotations

import numpy as np

SR = 16_000


def room_impulse_response(rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.8)
    n = int(sr * min(1.0, rt60 * 1.2))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # −60 dB at rt60
    tail[: int(sr * rng.uniform(0.002, 0.01))] = 0.0  # first reflections arrive after the direct path
    drr_db = rng.uniform(-3.0, 12.0)
    tail *= 10 ** (-drr_db / 20) / (np.sqrt(np.sum(tail ** 2)) + 1e-9)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import fftconvolve

    out = fftconvolve(y, room_impulse_response(rng))[: len(y)]
    return (out * (np.sqrt(np.mean(y ** 2)) / (np.sqrt(np.mean(out ** 2)) + 1e-9))).astype(np.float32)


def band_limit(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    from ser.audio.decode import resample

    if rng.random() < 0.5:  # telephone
        low = resample(resample(y, SR, 8000), 8000, SR)[: len(y)]
        sos = butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos")
        return sosfilt(sos, low).astype(np.float32)
    sos = butter(6, rng.uniform(4000, 7000), btype="lowpass", fs=SR, output="sos")
    return sosfilt(sos, y).astype(np.float32)


def codec_round_trip(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from ser.audio.decode import AudioLimits, load_audio
    from ser.audio.fuzz import encode

    fmt = ("mp3", "opus", "m4a")[rng.integers(3)]
    try:
        data = encode(np.clip(y, -1, 1).astype(np.float32), SR, fmt)
        out = load_audio(data, limits=AudioLimits(min_duration_s=0.0), name=f"augment.{fmt}").y
    except Exception:  # noqa: BLE001 - an encoder missing from this FFmpeg build: keep the clip as is
        return y
    out = out[: len(y)]
    return np.pad(out, (0, len(y) - len(out))).astype(np.float32)


def add_noise(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = rng.standard_normal(len(y))
    colour = rng.integers(3)
    if colour:  # pink (1/f) or brown (1/f²) by shaping the spectrum
        spec = np.fft.rfft(n)
        f = np.maximum(np.fft.rfftfreq(len(n)), 1.0 / len(n))
        n = np.fft.irfft(spec / f ** (0.5 * colour), len(n))
    snr = rng.uniform(5.0, 30.0)
    p = float(np.mean(y ** 2)) + 1e-12
    n *= np.sqrt(p / 10 ** (snr / 10) / (np.mean(n ** 2) + 1e-12))
    return (y + n).astype(np.float32)


def channel_augment(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random microphone/room/codec chain applied to mono 16 kHz ``y``."""
    y = np.asarray(y, dtype=np.float32)
    if rng.random() < 0.5:
        y = reverberate(y, rng)
    if rng.random() < 0.3:
        y = band_limit(y, rng)
    if rng.random() < 0.5:
        y = add_noise(y, rng)
    peak = float(np.max(np.abs(y))) + 1e-9
    y = y * min(10 ** (rng.uniform(-20.0, 6.0) / 20), 1.0 / peak * 10 ** (rng.uniform(-1.0, 3.0) / 20))
    if rng.random() < 0.3:
        y = codec_round_trip(y, rng)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


__all__ = ["add_noise", "band_limit", "channel_augment", "codec_round_trip", "reverberate", "room_impulse_response"]
