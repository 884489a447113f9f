"""The audio door: every format, rate and channel count in; every bad input out with a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest

from audiogen import encode, tone
from ser.audio.decode import AudioLimits, load_audio
from ser.errors import AudioError

FORMATS = [("wav", None), ("wav", "PCM_U8"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"),
           ("wav", "DOUBLE"), ("flac", None), ("flac", "PCM_24"), ("ogg", None), ("opus", None), ("mp3", None),
           ("m4a", None), ("aac", None), ("webm", None)]


@pytest.mark.parametrize("fmt,subtype", FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
def test_every_format_decodes_to_mono_16k(fmt, subtype, channels):
    y = tone(1.5, 44_100, freq=220.0)
    audio = load_audio(encode(y, 44_100, fmt, channels=channels, subtype=subtype), name=f"clip.{fmt}")
    assert audio.sr == 16_000 and audio.y.dtype == np.float32 and audio.y.ndim == 1
    assert audio.source_channels == channels
    assert abs(audio.duration_s - 1.5) < 0.1  # codecs add a little priming
    # the content survives: dominant frequency is still 220 Hz
    spec = np.abs(np.fft.rfft(audio.y[: 16_000]))
    assert abs(np.argmax(spec) - 220) < 5  # 16000-point FFT at 16 kHz: bin k is k Hz


@pytest.mark.parametrize("sr", [8_000, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000, 192_000])
def test_any_rate_from_8_to_192k(sr):
    audio = load_audio(encode(tone(1.0, sr), sr, "wav"))
    assert audio.source_sr == sr and audio.sr == 16_000
    assert abs(len(audio.y) - 16_000) <= 2


@pytest.mark.parametrize("channels", [3, 6])
def test_many_channels_are_averaged(channels):
    import soundfile as sf

    y = tone(1.0, 16_000)
    data = np.stack([y] * channels, axis=1)
    data[:, -1] = 0  # one silent channel: the mean is (c-1)/c of the tone
    buf = io.BytesIO()
    sf.write(buf, data, 16_000, format="WAV", subtype="FLOAT")
    audio = load_audio(buf.getvalue())
    np.testing.assert_allclose(audio.y, y * (channels - 1) / channels, atol=1e-6)


def test_sources_path_bytes_and_file_object_agree(tmp_path):
    data = encode(tone(1.0, 16_000), 16_000, "flac")
    p = tmp_path / "a.flac"
    p.write_bytes(data)
    a, b, c = load_audio(p), load_audio(data), load_audio(io.BytesIO(data))
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.y, c.y)
    assert a.name == "a.flac" and a.content_hash() == b.content_hash()


def test_16k_mono_wav_is_bit_exact():
    y = (np.round(tone(1.0, 16_000) * 32767) / 32768).astype(np.float32)
    np.testing.assert_allclose(load_audio(encode(y, 16_000, "wav")).y, y, atol=1 / 32768)


# --- rejections: each asserts the error type and its message --------------------------
def _err(source, **kw) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kw)
    return str(info.value)


def test_empty_bytes():
    assert "is empty (0 bytes)" in _err(b"", name="up.wav")


def test_empty_file(tmp_path):
    (tmp_path / "e.wav").write_bytes(b"")
    assert "e.wav is empty (0 bytes)" in _err(tmp_path / "e.wav")


def test_missing_file_and_folder(tmp_path):
    assert "does not exist" in _err(tmp_path / "nope.wav")
    assert "is a folder" in _err(tmp_path)


def test_text_file_is_not_audio():
    msg = _err(b"just some notes\n" * 50, name="notes.wav")
    assert "could not be decoded" in msg and "text file" in msg and "Supported formats" in msg


def test_image_is_not_audio():
    import zlib

    png = b"\x89PNG\r\n\x1a\n" + zlib.compress(bytes(1000))
    msg = _err(png, name="photo.png")
    assert "photo.png" in msg and ("PNG image" in msg or "no audio stream" in msg)


def test_random_bytes_are_corrupt():
    msg = _err(np.random.default_rng(0).bytes(4000), name="junk.bin")
    assert "could not be decoded" in msg and "corrupt" in msg


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "webm"])
def test_truncated_file(fmt):
    data = encode(tone(2.0, 16_000), 16_000, fmt)
    msg = _err(data[: len(data) // 2], name=f"cut.{fmt}")
    assert "truncated" in msg or "corrupt" in msg


def test_header_only_wav():
    data = encode(tone(1.0, 16_000), 16_000, "wav")
    assert "truncated" in _err(data[:44], name="h.wav") or "no audio samples" in _err(data[:44], name="h.wav")


def test_nan_and_inf_samples():
    y = tone(1.0, 16_000)
    y[100], y[200] = np.nan, np.inf
    msg = _err(encode(y, 16_000, "wav", subtype="FLOAT"), name="bad.wav")
    assert "2 invalid samples (NaN or infinity)" in msg


def test_too_short():
    msg = _err(encode(tone(0.2, 16_000), 16_000, "wav"), name="blip.wav")
    assert "0.20 s long; at least 0.50 s is needed" in msg


def test_minimum_is_configurable():
    assert load_audio(encode(tone(0.2, 16_000), 16_000, "wav"), limits=AudioLimits(min_duration_s=0.1)).duration_s == pytest.approx(0.2)


def test_digital_silence():
    msg = _err(encode(np.zeros(16_000, np.float32), 16_000, "wav"), name="quiet.wav")
    assert "digital silence" in msg and "microphone" in msg


def test_dither_level_noise_counts_as_silence():
    y = (np.random.default_rng(0).standard_normal(16_000) * 2e-5).astype(np.float32)
    assert "digital silence" in _err(encode(y, 16_000, "wav", subtype="FLOAT"))


@pytest.mark.parametrize("fmt", ["wav", "m4a"])
def test_too_long(fmt):
    msg = _err(encode(tone(3.0, 16_000), 16_000, fmt), limits=AudioLimits(max_duration_s=2.0), name=f"talk.{fmt}")
    assert "the limit is 2.0 s" in msg and "Split it" in msg


def test_too_large():
    data = encode(tone(1.0, 16_000), 16_000, "wav")
    msg = _err(data, limits=AudioLimits(max_bytes=10_000), name="big.wav")
    assert "larger than the 9.8 KB limit" in msg


def test_rate_out_of_range():
    assert "4000 Hz" in _err(encode(tone(1.0, 4_000), 4_000, "wav"))


def test_wrong_type():
    assert "Cannot read audio from a int" in _err(42)


def test_text_mode_file(tmp_path):
    p = tmp_path / "t.wav"
    p.write_text("x")
    with open(p) as f:
        assert "text mode" in _err(f)


def test_default_maximum_is_two_hours():
    assert AudioLimits().max_duration_s == 7200


@pytest.mark.parametrize("placeholder", [0x7FFFFFFF, 0xFFFFFFFF])
def test_streamed_wav_with_unknown_length_is_accepted(placeholder):
    """espeak-ng --stdout and ffmpeg pipes write a placeholder length; that is not truncation."""
    data = bytearray(encode(tone(1.5), 16_000, "wav"))
    pos = data.index(b"data")
    data[pos + 4:pos + 8] = placeholder.to_bytes(4, "little")
    data[4:8] = (0xFFFFFFFF).to_bytes(4, "little")
    audio = load_audio(bytes(data))
    assert audio.duration_s == pytest.approx(1.5, abs=0.01)
    # a real cut is still reported
    with pytest.raises(AudioError, match="truncated"):
        load_audio(encode(tone(1.5), 16_000, "wav")[:20000])


def test_broken_wav_header_is_not_called_text():
    """Zero bytes are valid UTF-8; a RIFF header padded with them is a corrupt file, not a text file."""
    msg = _err(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20), name="bad.wav")
    assert "bad.wav" in msg and "text file" not in msg


def test_a_cut_is_exact_to_the_sample():
    """What the Analyze page plays for a clicked turn: exactly its span, not whole seconds."""
    import io

    import numpy as np
    import soundfile as sf

    from ser.audio.clip import cut_wav

    y = (np.arange(16_000 * 10) % 1000 / 1000.0 - 0.5).astype(np.float32)
    clip, sr = sf.read(io.BytesIO(cut_wav(y, 16_000, 7.18, 7.48)), dtype="float32")
    assert sr == 16_000 and len(clip) == 4800  # 0.30 s
    assert np.allclose(clip, y[114_880:119_680], atol=1 / 32768)  # from sample 7.18·16000
    assert len(sf.read(io.BytesIO(cut_wav(y, 16_000, 9.9, 12.0)))[0]) == 1600  # clamped to the end
