"""Architectures, the model folder (safetensors + card) and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiogen import tone
from ser.errors import AudioError, ModelError
from ser.emotion.features import FeatureConfig, pooled_statistics
from ser.emotion.nets import ARCHITECTURES, build_model, count_parameters, spec_augment
from ser.emotion.folder import ModelCard, save_model
from ser.emotion.model import load_model


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_trains_one_step_and_round_trips(arch, tmp_path):
    torch.manual_seed(0)
    fc = FeatureConfig()
    net = build_model(arch, fc, 8)
    x = torch.randn(4, 260) if arch == "logreg" else torch.randn(4, 24_000) * 0.1  # (B, n) 1.5 s
    y = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = [p.detach().clone() for p in net.parameters()]
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    net.eval()
    card = ModelCard(name=arch, architecture=arch, labels=[str(i) for i in range(8)])
    folder = save_model(net, card, tmp_path / arch)
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.safetensors"]
    assert json.loads((folder / "card.json").read_text())["parameters"] == count_parameters(net)
    loaded = load_model(folder, device="cpu")
    with torch.inference_mode():
        # whisper stores its (pretrained, float16-published) encoder in float16: random float32 init rounds
        tol = {"atol": 2e-3, "rtol": 2e-3} if getattr(net, "store_half", ()) else {}
        torch.testing.assert_close(loaded.net(x[:1]), net(x[:1]), **tol)


def test_student_gru_settings():
    gru = build_model("gru", FeatureConfig(), 8).gru
    assert (gru.hidden_size, gru.num_layers) == (32, 3)


def test_predict_gives_the_students_schema(tiny_model_dir, speech_like):
    m = load_model(tiny_model_dir, device="cpu")
    out = m.predict(speech_like, 16_000)
    assert set(out) == {"emotion", "probabilities", "uncertain"}
    assert list(out["probabilities"]) == m.labels and out["emotion"] in m.labels
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert out["emotion"] == max(out["probabilities"], key=out["probabilities"].get)


def test_logreg_predicts_from_pooled_statistics(tmp_path, speech_like):
    net = build_model("logreg", FeatureConfig(), 8).eval()
    folder = save_model(net, ModelCard(name="lr", architecture="logreg", labels=list("abcdefgh")), tmp_path / "lr")
    m = load_model(folder, device="cpu")
    assert m.input_kind == "pooled"
    z = m.logits(speech_like, 16_000)
    with torch.inference_mode():
        ref = net(torch.from_numpy(pooled_statistics(speech_like, 16_000))[None])[0].numpy()
    np.testing.assert_allclose(z, ref, atol=1e-5)


def test_temperature_softens_probabilities(tiny_model_dir, speech_like, tmp_path):
    import shutil

    hot = tmp_path / "hot"
    shutil.copytree(tiny_model_dir, hot)
    card = json.loads((hot / "card.json").read_text())
    card["temperature"] = 100.0
    (hot / "card.json").write_text(json.dumps(card))
    p = load_model(hot, device="cpu").predict_proba(speech_like, 16_000)
    assert p.max() - p.min() < 0.05


def test_too_little_sound_after_trimming(tiny_model_dir):
    m = load_model(tiny_model_dir, device="cpu")
    y = np.concatenate([np.zeros(32_000), tone(0.3, 16_000), np.zeros(32_000)]).astype(np.float32)
    with pytest.raises(AudioError, match=r"0\.\d+ s of sound after trimming silence; the model needs at least 0.50 s"):
        m.predict(y, 16_000)
    with pytest.raises(AudioError, match="expects 16000 Hz"):
        m.predict(tone(1.0, 8_000), 8_000)


def test_load_errors_are_clear(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="No model folder found for '.*nope'.*a model folder holds card.json"):
        load_model(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(broken)
    (broken / "card.json").write_text(json.dumps({"name": "x", "architecture": "sercnn", "labels": ["a", "b"]}))
    with pytest.raises(ModelError, match="has no model.safetensors"):
        load_model(broken)
    (broken / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match="do not match the card's architecture"):
        load_model(broken)
    with pytest.raises(ModelError, match="Unknown architecture 'transformer'"):
        build_model("transformer", FeatureConfig(), 2)


def test_a_pickle_is_never_loaded(tmp_path, tiny_model_dir):
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(tiny_model_dir, evil)
    torch.save({"x": torch.zeros(1)}, evil / "model.safetensors")  # a pickle in disguise
    with pytest.raises(Exception) as info:
        load_model(evil, device="cpu")
    assert "pickle" not in type(info.value).__module__


def test_long_clip_is_scored_in_windows(tiny_model_dir):
    m = load_model(tiny_model_dir, device="cpu")
    y = np.concatenate([tone(12.0, 16_000, freq=150.0), tone(13.0, 16_000, freq=300.0, seed=1)])  # 25 s
    p = m.predict_proba(y, 16_000)
    assert p.shape == (8,) and abs(p.sum() - 1) < 1e-5
    m.max_clip_s = 60.0
    whole = m.predict_proba(y, 16_000)
    assert not np.allclose(p, whole)  # the windowed path really ran


def test_device_auto_and_cuda_request():
    from ser.emotion.model import pick_device

    with pytest.raises(ModelError, match="Unknown device 'gpu'"):
        pick_device("gpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU is available"):
            pick_device("cuda")


def test_spec_augment_masks_but_keeps_shape():
    torch.manual_seed(0)
    x = torch.randn(3, 64, 200)
    y = spec_augment(x, freq_masks=2, freq_width=8, time_masks=2, time_width=0.1)
    assert y.shape == x.shape and not torch.equal(x, y)
    assert (y != x).float().mean() < 0.5
