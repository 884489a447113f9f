"""Pure feature functions over ``(y, sr)``, one parameter vocabulary.

Shapes follow librosa: a feature matrix is ``(n_features, n_frames)``. Frames are
centred (the signal is zero-padded by ``n_fft // 2`` on both sides), so frame ``t``
is centred at ``t * hop_length / sr`` seconds.

The log-mel and MFCC math is implemented here in NumPy (the mel filterbank follows
librosa's Slaney definition, which the tests check); :class:`ser.emotion.nets.LogMel`
wraps the very same filterbank for batched GPU/CPU use inside models. The spectral
statistics used by the original student projects (centroid, contrast, zero-crossing
rate, RMS) come from librosa, imported only when one of them is called.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Defaults for the frame grid at 16 kHz: 25 ms windows, 10 ms hop.
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 64
N_MFCC = 40


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings stored in every model card."""

    sr: int = 16_000  # analysis sample rate, Hz
    n_fft: int = N_FFT  # FFT size, samples
    win_length: int = WIN_LENGTH  # analysis window (Hann), samples
    hop_length: int = HOP_LENGTH  # frame step, samples
    n_mels: int = N_MELS  # mel bands
    fmin: float = 20.0  # lowest mel edge, Hz
    fmax: float | None = None  # highest mel edge, Hz (None: sr / 2)
    n_mfcc: int = N_MFCC  # cepstral coefficients kept
    trim_db: float | None = 40.0  # trim leading/trailing audio quieter than peak - trim_db (None: off)

    def to_dict(self) -> dict:
        return asdict(self)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(*, sr: int, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 20.0,
                   fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters: (n_mels, n_fft // 2 + 1) float32."""
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _frame_power(y: np.ndarray, *, n_fft: int, win_length: int, hop_length: int) -> np.ndarray:
    """Power spectrogram |STFT|^2: (n_fft // 2 + 1, n_frames)."""
    y = np.asarray(y, dtype=np.float32)
    pad = n_fft // 2
    yp = np.pad(y, (pad, pad))
    n_frames = 1 + (len(yp) - n_fft) // hop_length
    window = np.zeros(n_fft, np.float32)
    off = (n_fft - win_length) // 2
    window[off:off + win_length] = np.hanning(win_length + 1)[:-1]  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop_length][:n_frames]  # (T, n_fft)
    spec = np.fft.rfft(frames * window, axis=1)  # (T, F)
    return (np.abs(spec) ** 2).T.astype(np.float32)


def power_to_db(S: np.ndarray, *, amin: float = 1e-10) -> np.ndarray:
    """10·log10(max(S, amin)), no reference scaling and no clipping."""
    return (10.0 * np.log10(np.maximum(S, amin))).astype(np.float32)


def mel_spectrogram(y: np.ndarray, sr: int, *, n_fft: int = N_FFT, win_length: int = WIN_LENGTH,
                    hop_length: int = HOP_LENGTH, n_mels: int = N_MELS, fmin: float = 20.0,
                    fmax: float | None = None) -> np.ndarray:
    """Mel power spectrogram: (n_mels, n_frames)."""
    power = _frame_power(y, n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    return mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax) @ power


def log_mel(y: np.ndarray, sr: int, *, n_fft: int = N_FFT, win_length: int = WIN_LENGTH,
            hop_length: int = HOP_LENGTH, n_mels: int = N_MELS, fmin: float = 20.0,
            fmax: float | None = None, top_db: float | None = None) -> np.ndarray:
    """Log-mel spectrogram in dB: (n_mels, n_frames); floored at max − ``top_db`` if given."""
    S = power_to_db(mel_spectrogram(y, sr, n_fft=n_fft, win_length=win_length,
                                    hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax))
    return S if top_db is None else np.maximum(S, S.max() - top_db)


def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II basis: (n_mfcc, n_mels), as scipy's ``dct(norm='ortho')``."""
    n = np.arange(n_mels)
    basis = np.cos(np.pi / n_mels * (n[None, :] + 0.5) * np.arange(n_mfcc)[:, None])
    basis *= np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def mfcc(y: np.ndarray, sr: int, *, n_mfcc: int = N_MFCC, n_mels: int = N_MELS, n_fft: int = N_FFT,
         win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH, fmin: float = 20.0,
         fmax: float | None = None, deltas: bool = False) -> np.ndarray:
    """MFCCs: (n_mfcc, n_frames), or (3 * n_mfcc, n_frames) with deltas and delta-deltas."""
    lm = log_mel(y, sr, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                 n_mels=n_mels, fmin=fmin, fmax=fmax)
    c = dct_matrix(n_mfcc, n_mels) @ lm
    if not deltas:
        return c
    d1 = delta(c)
    return np.concatenate([c, d1, delta(d1)], axis=0)


def delta(x: np.ndarray, *, width: int = 9) -> np.ndarray:
    """Regression deltas along the last axis (HTK formula), edges replicated: same shape."""
    n = width // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n, n)], mode="edge")
    T = x.shape[-1]
    num = sum(k * (xp[..., n + k:n + k + T] - xp[..., n - k:n - k + T]) for k in range(1, n + 1))
    return (num / (2 * sum(k * k for k in range(1, n + 1)))).astype(np.float32)


def rms(y: np.ndarray, *, frame_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Frame RMS energy: (1, n_frames)."""
    import librosa

    return librosa.feature.rms(y=y, frame_length=frame_length, hop_length=hop_length)


def zero_crossing_rate(y: np.ndarray, *, frame_length: int = WIN_LENGTH,
                       hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Fraction of sign changes per frame: (1, n_frames)."""
    import librosa

    return librosa.feature.zero_crossing_rate(y, frame_length=frame_length, hop_length=hop_length)


def spectral_centroid(y: np.ndarray, sr: int, *, n_fft: int = N_FFT,
                      hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Spectral centroid in Hz: (1, n_frames)."""
    import librosa

    return librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length)


def spectral_contrast(y: np.ndarray, sr: int, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
                      n_bands: int = 6, fmin: float = 100.0) -> np.ndarray:
    """Octave-band spectral contrast in dB: (n_bands + 1, n_frames)."""
    import librosa

    return librosa.feature.spectral_contrast(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length,
                                             n_bands=n_bands, fmin=fmin)


def pooled_statistics(y: np.ndarray, sr: int, *, n_mfcc: int = N_MFCC, n_mels: int = N_MELS,
                      n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """The student projects' clip-level feature vector: mean and standard deviation over
    frames of MFCC + deltas + delta-deltas, spectral centroid, spectral contrast,
    zero-crossing rate and RMS: (2 * (3 * n_mfcc + 1 + 7 + 1 + 1),) float32."""
    frames = np.concatenate([
        mfcc(y, sr, n_mfcc=n_mfcc, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length, deltas=True),
        spectral_centroid(y, sr, n_fft=n_fft, hop_length=hop_length) / (sr / 2),
        spectral_contrast(y, sr, n_fft=n_fft, hop_length=hop_length) / 10.0,
        zero_crossing_rate(y, hop_length=hop_length),
        power_to_db(rms(y, hop_length=hop_length) ** 2) / 10.0,
    ], axis=0)  # (D, T)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)]).astype(np.float32)


def trim_silence(y: np.ndarray, *, top_db: float = 40.0, frame_length: int = 400,
                 hop_length: int = 160) -> np.ndarray:
    """Cut leading and trailing audio quieter than ``peak - top_db`` (frame RMS)."""
    if len(y) < frame_length:
        return y
    frames = np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop_length]
    energy = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    db = 20 * np.log10(np.maximum(energy, 1e-10))
    loud = np.flatnonzero(db > db.max() - top_db)
    if loud.size == 0:
        return y
    start = loud[0] * hop_length
    end = min(len(y), loud[-1] * hop_length + frame_length)
    return y[start:end]
