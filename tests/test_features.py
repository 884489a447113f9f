"""Feature functions: checked against librosa, and the torch front ends against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from audiogen import tone
from ser.emotion import features as F


@pytest.fixture
def y():
    rng = np.random.default_rng(1)
    return (tone(1.3, 16_000) + 0.05 * rng.standard_normal(20_800)).astype(np.float32)


def test_mel_filterbank_matches_librosa():
    import librosa

    for sr, n_fft, n_mels, fmin, fmax in [(16_000, 512, 64, 20.0, None), (16_000, 400, 40, 0.0, 7600.0), (22_050, 1024, 128, 0.0, None)]:
        ours = F.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_log_mel_matches_librosa(y):
    import librosa

    ref = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=16_000, n_fft=512, win_length=400, hop_length=160, n_mels=64, fmin=20, pad_mode="constant"),
        ref=1.0, top_db=None)
    ours = F.log_mel(y, 16_000)
    assert ours.shape == ref.shape == (64, 1 + len(y) // 160)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_mfcc_and_deltas_match_librosa(y):
    import librosa

    ours = F.mfcc(y, 16_000, deltas=True)
    assert ours.shape[0] == 3 * F.N_MFCC
    ref = librosa.feature.mfcc(S=F.log_mel(y, 16_000), n_mfcc=40)
    np.testing.assert_allclose(ours[:40], ref, atol=1e-3)
    d = librosa.feature.delta(ours[:40])
    np.testing.assert_allclose(ours[40:80, 5:-5], d[:, 5:-5], atol=1e-4)  # same in the interior


def test_spectral_statistics_shapes(y):
    T = 1 + len(y) // 160
    assert F.rms(y).shape == (1, T)
    assert F.zero_crossing_rate(y).shape == (1, T)
    assert F.spectral_centroid(y, 16_000).shape == (1, T)
    assert F.spectral_contrast(y, 16_000).shape == (7, T)
    v = F.pooled_statistics(y, 16_000)
    assert v.shape == (260,) and np.isfinite(v).all()


def test_centroid_tracks_frequency():
    low = F.spectral_centroid(np.sin(2 * np.pi * 300 * np.arange(16_000) / 16_000).astype(np.float32), 16_000)
    high = F.spectral_centroid(np.sin(2 * np.pi * 3000 * np.arange(16_000) / 16_000).astype(np.float32), 16_000)
    assert np.median(low) == pytest.approx(300, rel=0.1) and np.median(high) == pytest.approx(3000, rel=0.1)


def test_torch_front_ends_match_numpy(y):
    import torch

    from ser.emotion.nets import MFCC, LogMel

    fc = F.FeatureConfig()
    x = torch.from_numpy(y)[None]
    np.testing.assert_allclose(LogMel(fc, top_db=None)(x)[0].numpy(), F.log_mel(y, 16_000), atol=1e-3)
    np.testing.assert_allclose(LogMel(fc, top_db=60)(x)[0].numpy(), F.log_mel(y, 16_000, top_db=60), atol=1e-3)
    np.testing.assert_allclose(MFCC(fc, top_db=None)(x)[0].numpy(), F.mfcc(y, 16_000), atol=1e-2)


def test_trim_silence_keeps_the_sound():
    y = np.concatenate([np.zeros(8_000), tone(1.0, 16_000), np.zeros(8_000)]).astype(np.float32)
    t = F.trim_silence(y, top_db=40)
    assert abs(len(t) - 16_000) < 800


def test_trim_silence_of_short_or_flat_input_is_identity():
    assert len(F.trim_silence(np.zeros(100, np.float32))) == 100
