"""The Whisper encoder in PyTorch: the CTranslate2 reader, the log-mel front end, the model
folder (float16 encoder, float32 run), turn-level encoding, and multi-corpus training."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.emotion.features import FeatureConfig
from ser.emotion.whisper import (
    N_MELS,
    WhisperEncoder,
    WhisperFrames,
    WhisperLogMel,
    ct2_to_state,
    mean_std,
    mel_filters,
    read_ct2,
)

D, HEADS, LAYERS = 16, 2, 3


def tiny_ct2_variables(seed: int = 0) -> dict[str, np.ndarray]:
    """A random Whisper-shaped encoder, named as CTranslate2's WhisperSpec names it."""
    rng = np.random.default_rng(seed)
    r = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float16)  # noqa: E731
    v = {"encoder/conv1/weight": r(D, N_MELS, 3), "encoder/conv1/bias": r(D),
         "encoder/conv2/weight": r(D, D, 3), "encoder/conv2/bias": r(D),
         "encoder/position_encodings/encodings": r(1500, D),
         "encoder/num_heads": np.array(HEADS, np.int16),
         "encoder/layer_norm/gamma": r(D), "encoder/layer_norm/beta": r(D),
         "decoder/embeddings/weight": r(4, D)}
    for i in range(LAYERS):
        p = f"encoder/layer_{i}/"
        v.update({p + "self_attention/layer_norm/gamma": 1 + r(D), p + "self_attention/layer_norm/beta": r(D),
                  p + "self_attention/linear_0/weight": r(3 * D, D), p + "self_attention/linear_0/bias": r(3 * D),
                  p + "self_attention/linear_1/weight": r(D, D), p + "self_attention/linear_1/bias": r(D),
                  p + "ffn/layer_norm/gamma": 1 + r(D), p + "ffn/layer_norm/beta": r(D),
                  p + "ffn/linear_0/weight": r(4 * D, D), p + "ffn/linear_0/bias": r(4 * D),
                  p + "ffn/linear_1/weight": r(D, 4 * D), p + "ffn/linear_1/bias": r(D)})
    return v


def write_ct2(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """CTranslate2's binary format 6, as ``ctranslate2.specs.ModelSpec._serialize`` writes it."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
           np.dtype(np.float16): 4}

    def string(s: str) -> bytes:
        return struct.pack("H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("I", 6) + string("WhisperSpec") + struct.pack("I", 3) + struct.pack("I", len(variables))
    for name, a in variables.items():
        out += string(name) + struct.pack("B", a.ndim) + b"".join(struct.pack("I", d) for d in a.shape)
        out += struct.pack("B", ids[a.dtype]) + struct.pack("I", a.nbytes) + a.tobytes()
    out += struct.pack("I", 0)
    path.write_bytes(out)
    return path


def reference_encoder(v: dict[str, np.ndarray], mel: np.ndarray) -> list[np.ndarray]:
    """Whisper's encoder written out in NumPy from the CT2 tensors (openai/whisper model.py)."""
    f = {k: a.astype(np.float64) for k, a in v.items()}
    gelu = lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))  # noqa: E731

    def conv(x, w, b, stride):
        x = np.pad(x, ((0, 0), (1, 1)))
        T = (x.shape[1] - 3) // stride + 1
        return np.stack([np.einsum("oik,ik->o", w, x[:, t * stride:t * stride + 3]) for t in range(T)], 1) + b[:, None]

    def ln(x, g, b):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b

    x = gelu(conv(gelu(conv(mel.astype(np.float64), f["encoder/conv1/weight"], f["encoder/conv1/bias"], 1)),
                  f["encoder/conv2/weight"], f["encoder/conv2/bias"], 2)).T
    x = x + f["encoder/position_encodings/encodings"][: len(x)]
    outs = []
    for i in range(LAYERS):
        p = f"encoder/layer_{i}/"
        h = ln(x, f[p + "self_attention/layer_norm/gamma"], f[p + "self_attention/layer_norm/beta"])
        qkv = h @ f[p + "self_attention/linear_0/weight"].T + f[p + "self_attention/linear_0/bias"]
        q, k, val = np.split(qkv, 3, axis=-1)
        heads = []
        for j in range(HEADS):
            s = slice(j * D // HEADS, (j + 1) * D // HEADS)
            a = q[:, s] @ k[:, s].T / np.sqrt(D // HEADS)
            a = np.exp(a - a.max(-1, keepdims=True))
            heads.append((a / a.sum(-1, keepdims=True)) @ val[:, s])
        x = x + np.concatenate(heads, -1) @ f[p + "self_attention/linear_1/weight"].T + f[p + "self_attention/linear_1/bias"]
        h = ln(x, f[p + "ffn/layer_norm/gamma"], f[p + "ffn/layer_norm/beta"])
        x = x + gelu(h @ f[p + "ffn/linear_0/weight"].T + f[p + "ffn/linear_0/bias"]) @ f[p + "ffn/linear_1/weight"].T \
            + f[p + "ffn/linear_1/bias"]
        outs.append(x)
    return outs


def test_ct2_reader_round_trip_and_encoder_matches_a_numpy_whisper(tmp_path):
    v = tiny_ct2_variables()
    read = read_ct2(write_ct2(tmp_path / "model.bin", v))
    assert set(read) == set(v) and all(np.array_equal(read[k], v[k]) for k in v)
    state = ct2_to_state(read)
    assert "ln_post.weight" in state and int(state["n_heads"]) == HEADS
    enc = WhisperEncoder.from_state(state)
    assert len(enc.layers) == LAYERS
    mel = np.random.default_rng(1).standard_normal((N_MELS, 40)).astype(np.float32)
    with torch.inference_mode():
        ours = [o[0].numpy() for o in enc(torch.from_numpy(mel)[None])]
    ref = reference_encoder(v, mel)
    assert ours[0].shape == (20, D)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    # truncation keeps the first blocks, unchanged
    enc2 = WhisperEncoder.from_state(ct2_to_state(read, n_layers=2))
    with torch.inference_mode():
        np.testing.assert_allclose(enc2(torch.from_numpy(mel)[None])[1][0].numpy(), ours[1], atol=1e-5)


def test_ct2_reader_refuses_another_version(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(struct.pack("I", 5) + b"\0" * 16)
    with pytest.raises(ValueError, match="version 5"):
        read_ct2(p)


def test_logmel_is_whispers_formula():
    """log10 power through the Slaney 80-band filterbank, floored at max − 8, (x + 4) / 4;
    the last STFT frame dropped (n // 160 frames)."""
    import librosa

    y = np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1
    np.testing.assert_allclose(mel_filters(), librosa.filters.mel(sr=16_000, n_fft=400, n_mels=80), atol=1e-6)
    spec = np.abs(librosa.stft(y, n_fft=400, hop_length=160, window="hann", pad_mode="reflect")[:, :-1]) ** 2
    ref = np.log10(np.maximum(mel_filters() @ spec, 1e-10))
    ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
    ours = WhisperLogMel()(torch.from_numpy(y)[None])[0].numpy()
    assert ours.shape == (80, 100)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_masked_batch_equals_one_at_a_time():
    enc = WhisperEncoder.from_state(ct2_to_state(tiny_ct2_variables()))
    mel = torch.randn(2, N_MELS, 60)
    with torch.inference_mode():
        alone = enc(mel[1:, :, :30])[-1][0]
        batch = enc(mel.clone().index_fill_(2, torch.arange(30, 60), 0.0)[[1, 0]], positions=torch.tensor([15, 30]))[-1]
    np.testing.assert_allclose(batch[0, :15].numpy(), alone.numpy(), atol=1e-5)


def test_long_audio_is_encoded_in_30_s_pieces():
    enc = WhisperEncoder.from_state(ct2_to_state(tiny_ct2_variables()))
    frames = WhisperFrames(enc, (0, 2))
    y = torch.randn(16_000 * 31) * 0.1
    f = frames(y)
    assert f.shape == (2, 1500 + 50, D)
    np.testing.assert_allclose(f[:, :1500].numpy(), frames(y[:480_000]).numpy(), atol=1e-5)
    assert mean_std(f[:1]).shape == (1, 2 * D)


def _tiny_encoder_file(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    state = ct2_to_state(tiny_ct2_variables())
    path = tmp_path / "tiny-encoder.safetensors"
    save_file({f"encoder.{k}": v.half().contiguous() for k, v in state.items() if k != "n_heads"}, str(path))
    return path


def test_model_folder_stores_the_encoder_in_float16_and_spans_pool_one_encoding(tmp_path):
    from safetensors import safe_open

    from ser.emotion.folder import ModelCard, save_model
    from ser.emotion.model import load_model
    from ser.training.heads import build_net

    labels = ["neutral", "happy", "sad"]
    args = {"layers": [0, 2], "d": D, "n_heads": HEADS}
    net = build_net(labels, args, _tiny_encoder_file(tmp_path))
    torch.nn.init.normal_(net.linear.weight)
    folder = save_model(net, ModelCard(name="w", architecture="whisper", labels=labels, label_set="four",
                                       arch_args=args, min_duration_s=0.3), tmp_path / "w")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert f.get_tensor("encoder.conv1.weight").dtype == torch.float16
        assert f.get_tensor("linear.weight").dtype == torch.float32
    m = load_model(folder, device="cpu")
    rng = np.random.default_rng(0)
    t = np.arange(48_000) / 16_000
    y = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    from ser.emotion.calibration import softmax

    whole = softmax(m.logits(y, 16_000) / m.card.temperature)  # the clip as one piece, untrimmed
    spans = m.predict_proba_spans(y, 16_000, [(0, len(y)), (0, 16_000), (16_000, 48_000), (100, 2000)])
    np.testing.assert_allclose(spans[0], whole, atol=1e-4)  # one span = the clip
    assert np.isfinite(spans[1:3]).all() and np.allclose(spans[1:3].sum(1), 1, atol=1e-5)
    assert np.isnan(spans[3]).all()  # 0.12 s: too short, unscored


def _synthetic_corpora(root: Path) -> list[tuple[str, str]]:
    """Tiny RAVDESS, ASED and EmoDB trees of real (tonal) audio: 3 speakers each, their own classes."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    pitch = {"neutral": 120, "calm": 130, "happy": 220, "sad": 100, "angry": 260, "fearful": 300, "disgust": 150,
             "surprised": 330}

    def clip(label: str) -> np.ndarray:
        t = np.arange(int(16_000 * rng.uniform(0.8, 1.2))) / 16_000
        f0 = pitch[label] * rng.uniform(0.95, 1.05)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) * 0.1
        return (y + 0.005 * rng.standard_normal(len(t))).astype(np.float32)

    rav, ased, emodb = root / "rav", root / "ased", root / "emodb"
    codes = {"neutral": "01", "calm": "02", "happy": "03", "sad": "04", "angry": "05", "fearful": "06", "disgust": "07", "surprised": "08"}
    for actor in (1, 2, 3):
        for label, code in codes.items():
            p = rav / f"Actor_{actor:02d}" / f"03-01-{code}-01-01-01-{actor:02d}.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, clip(label), 16_000)
    letters = {"n": ("01Neutral", 1), "f": ("02Fearful", 2), "h": ("03Happy", 3), "s": ("04Sad", 4), "a": ("05Angry", 5)}
    for spk in (1, 2, 3):
        for letter, (folder, n) in letters.items():
            p = ased / folder / f"{letter}{n}-01-01-02-{spk:02d}.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, clip({"n": "neutral", "f": "fearful", "h": "happy", "s": "sad", "a": "angry"}[letter]), 16_000)
    for spk in ("03", "08", "09"):
        for letter, label in {"W": "angry", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral", "L": "neutral"}.items():
            p = emodb / f"{spk}a01{letter}a.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, clip(label), 16_000)
    return [(str(rav), "ravdess"), (str(ased), "ased"), (str(emodb), "emodb")]


def test_multi_corpus_training_smoke(tmp_path, monkeypatch):
    """`ser train` with three --data/--corpus pairs: pooled CV, leave-one-corpus-out, calibration,
    a card with per-corpus figures and the label policy, and a model that loads and predicts."""
    from ser.cli import main
    from ser.emotion.model import load_model

    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    corpora = _synthetic_corpora(tmp_path / "data")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"arch": "whisper", "folds": 3, "augment": 1, "head_c": 1.0,
                               "arch_args": {"layers": [0, 2], "d": D, "n_heads": HEADS, "adapt": ["batch", "speaker"]}}))
    argv = ["train", "--config", str(cfg), "--encoder", str(_tiny_encoder_file(tmp_path)), "--out", str(tmp_path / "m"),
            "--quiet", "--threads", "1"]
    for path, corpus in corpora:
        argv += ["--data", path, "--corpus", corpus]
    assert main(argv) == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["architecture"] == "whisper" and card["labels"][:2] == ["neutral", "calm"]
    per = card["metrics"]["per_corpus"]
    assert set(per) == {"ravdess", "ased", "emodb"} and per["ased"]["chance"] == pytest.approx(0.2)
    loco = card["metrics"]["leave_one_corpus_out"]["per_corpus"]
    assert loco["ased"]["trained_on"] == ["emodb", "ravdess"] and "calm" not in loco["ravdess"]["classes"]
    assert card["data"]["label_policy"]["ased"]["lacks"] == ["calm", "disgust", "surprised"]
    assert "ASED" in card["licence"] and "MIT" in card["licence"]
    assert card["metrics"]["calibration"]["temperature"] > 0
    assert len(list((tmp_path / "cache" / "features").glob("whisper-*.npy"))) == 1
    for mode in ("batch", "speaker"):  # each adaptation head calibrated and scored on the held-out corpora
        ad = card["adaptation"][mode]
        assert ad["temperature"] > 0 and 0 <= ad["uncertain_margin"] <= 1 and ad["min_clips"] >= 2
        assert set(ad["leave_one_corpus_out"]["per_corpus"]) == {"ravdess", "ased", "emodb"}
        assert 0 <= ad["leave_one_corpus_out"]["mean"]["stress"]["guard_fired"] <= 1
    assert "uar_30" in card["adaptation"]["batch"]["leave_one_corpus_out"]["mean"]
    m = load_model(tmp_path / "m", device="cpu")
    p = m.predict_proba(np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000).astype(np.float32) * 0.1, 16_000)
    assert p.shape == (8,) and abs(p.sum() - 1) < 1e-5
    from ser.emotion.adapt import adapt_probabilities

    X = np.stack([m.pooled(np.sin(2 * np.pi * f * np.arange(16_000) / 16_000).astype(np.float32) * 0.1, 16_000)
                  for f in (110, 150, 220, 260, 300, 330)])
    pa, adapted, reports = adapt_probabilities(m, X, ["g"] * 6, "batch")
    assert pa.shape == (6, 8) and np.allclose(pa.sum(1), 1, atol=1e-5) and reports["g"]["clips"] == 6


def test_loco_never_puts_a_corpus_on_both_sides(monkeypatch):
    from ser.training import protocols
    from ser.training.datasets import Utterance

    rng = np.random.default_rng(0)
    utts, labels = [], []
    for corpus, classes in (("a", [0, 1, 2]), ("b", [0, 1, 3]), ("c", [1, 2, 3])):
        for spk in range(3):
            for k in classes:
                utts.append(Utterance(Path(f"{corpus}{spk}{k}.wav"), "neutral", f"{corpus}:{spk}", None, corpus))
                labels.append(k)
    y = np.array(labels)
    X = rng.standard_normal((len(y), 2, 6)) + np.eye(6)[y][:, None, :] * 3
    seen = []
    real_fit = protocols.fit_head

    def spy(Xtr, ytr, corpora, n, **kw):
        seen.append(set(corpora))
        return real_fit(Xtr, ytr, corpora, n, **kw)

    monkeypatch.setattr(protocols, "fit_head", spy)
    res = protocols.leave_one_corpus_out(utts, X, y, [str(i) for i in range(6)], C=10.0)
    assert seen == [{"b", "c"}, {"a", "c"}, {"a", "b"}]
    assert res["per_corpus"]["a"]["classes"] == ["0", "1", "2"] and res["per_corpus"]["a"]["chance"] == pytest.approx(1 / 3)
    assert all(v["uar"] > 0.8 for v in res["per_corpus"].values()), res["per_corpus"]


def test_balance_weights_equalise_corpora_and_classes():
    from ser.training.heads import balance_weights

    w = balance_weights(["a"] * 6 + ["b"] * 2, [0, 0, 0, 0, 1, 1, 0, 1])
    assert w[:6].sum() == pytest.approx(w[6:].sum())
    assert w[:4].sum() == pytest.approx(w[4:6].sum())


def test_channel_augment_keeps_length_and_is_seeded():
    from ser.audio.augment import channel_augment

    y = (0.2 * np.sin(2 * np.pi * 200 * np.arange(16_000) / 16_000)).astype(np.float32)
    a = [channel_augment(y, np.random.default_rng(s)) for s in range(12)]
    assert all(z.shape == y.shape and z.dtype == np.float32 and np.isfinite(z).all() and np.abs(z).max() <= 1 for z in a)
    np.testing.assert_array_equal(a[3], channel_augment(y, np.random.default_rng(3)))
    assert len({round(float(np.std(z)), 4) for z in a}) > 6


def test_feature_config_unused_by_whisper_is_harmless():
    from ser.emotion.nets import build_model

    net = build_model("whisper", FeatureConfig(), 4, layers=[0], d=D, n_heads=HEADS)
    assert net(torch.randn(2, 8000) * 0.1).shape == (2, 4)
