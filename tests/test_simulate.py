"""The conversation simulator: its reference turns are exactly where each voice was mixed."""

from __future__ import annotations

import numpy as np
import pytest

from ser.diarization.simulate import SimSettings, overlap_fraction, simulate

SR = 16000


def _voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def pool():
    """Three synthetic 'speakers', each with clips of different lengths (paths are keys into a table)."""
    table = {f"s{k}/{i}": _voice(110 + 60 * k, 0.8 + 0.5 * i, 10 * k + i) for k in range(3) for i in range(4)}
    return {"toy": {f"s{k}": [f"s{k}/{i}" for i in range(4)] for k in range(3)}}, table


def test_reference_turns_match_the_mixed_sources(pool):
    spk, table = pool
    s = simulate(spk, 7, SimSettings(speakers=(3, 3), duration_s=(20, 20), reverb_p=1.0, noise_p=0.0,
                                     band_limit_p=0.0), sources=True, clip=lambda p: table[str(p)])
    assert s.info["speakers"] == 3 and len(s.sources) == 3
    assert np.allclose(sum(s.sources.values()), s.y, atol=1e-5)  # no noise: the mix is the sum of the voices
    for name, track in s.sources.items():
        mask = np.zeros(len(track), bool)
        for t in s.turns:
            if t.speaker == name:
                mask[int(round(t.start_s * SR)):int(round(t.end_s * SR))] = True
        assert np.abs(track[~mask]).max() == 0.0  # silent outside its reference turns
        # and talking throughout them (no 50-ms stretch of silence inside a turn)
        frames = np.abs(track[mask][: len(track[mask]) // 800 * 800].reshape(-1, 800)).max(1)
        assert (frames > 0).all()
    assert s.turns == sorted(s.turns, key=lambda t: (t.start_s, t.speaker))


def test_recordings_are_seeded_and_overlap_is_measured(pool):
    spk, table = pool
    kw = dict(settings=SimSettings(speakers=(2, 3), duration_s=(30, 30), overlap_rate=(0.8, 0.8)),
              clip=lambda p: table[str(p)])
    a, b = simulate(spk, 3, **kw), simulate(spk, 3, **kw)
    assert np.array_equal(a.y, b.y) and a.turns == b.turns
    assert not np.array_equal(a.y, simulate(spk, 4, **kw).y)
    assert 0.0 < a.info["overlap_fraction"] == round(overlap_fraction(a.turns), 3)
    level = 20 * np.log10(np.sqrt(np.mean(a.y[np.abs(a.y) > 1e-4] ** 2)))
    assert -50 < level < -15  # the overall level drawn for the recording


def test_overlap_fraction_of_known_turns():
    from ser.analysis.demo import Turn
    turns = [Turn(0, 4, "a"), Turn(3, 6, "b"), Turn(8, 10, "a")]
    assert overlap_fraction(turns) == pytest.approx(1 / 8)
