"""Unsupervised adaptation (ser.emotion.adapt): off by default, shrinkage, the one-emotion guard, the mode
recorded in every output, speaker groups from the CSV or from diarization."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiogen import tone
from ser.emotion.adapt import (
    AdaptHead,
    AdaptSettings,
    adapt_group,
    adapt_logits,
    adapt_probabilities,
    group_centre,
)
from ser.errors import ConfigError, ModelError, SERError
from ser.emotion.head import Head

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo_dialogue.wav"


@pytest.fixture(scope="module")
def adapt_model_dir(tmp_path_factory) -> Path:
    """A tiny Whisper model (random encoder and heads) with "batch" and "speaker" adaptation heads."""
    from test_whisper import HEADS, D, _tiny_encoder_file

    from ser.emotion.folder import ModelCard, save_model
    from ser.training.heads import build_net

    tmp = tmp_path_factory.mktemp("adapt")
    labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    args = {"layers": [0, 2], "d": D, "n_heads": HEADS, "adapt": ["batch", "speaker"]}
    net = build_net(labels, args, _tiny_encoder_file(tmp))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for lin in [net.linear] + [net.adapt[m].linear for m in ("batch", "speaker")]:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
    adaptation = {m: {**AdaptSettings().__dict__, "temperature": 1.3, "uncertain_margin": 0.05} for m in ("batch", "speaker")}
    card = ModelCard(name="adapt", architecture="whisper", labels=labels, arch_args=args, min_duration_s=0.3,
                     adaptation=adaptation)
    return save_model(net, card, tmp / "adapt")


def _clips(folder: Path, n: int, speakers: int = 1) -> list[str]:
    files = []
    for i in range(n):
        spk = folder / f"spk{i % speakers}"
        spk.mkdir(parents=True, exist_ok=True)
        y = tone(1.0 + 0.1 * (i % 5), freq=120.0 + 35.0 * i, amp=0.1 + 0.02 * (i % 4))
        f = spk / f"clip{i:02d}.wav"
        sf.write(f, y, 16_000)
        files.append(str(f))
    return files


def _predict(argv: list[str], capsys) -> list[dict]:
    from ser.cli import main

    main(["predict", *argv])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_adaptation_is_off_by_default(adapt_model_dir, tmp_path, capsys):
    """Off everywhere unless asked: per-speaker centring, tried as the analyses' default, lost
    accuracy in conversations (bench/results/adapt_conversations.json)."""
    from ser.cli import build_parser

    assert build_parser().parse_args(["predict", "x.wav"]).adapt == "none"
    assert build_parser().parse_args(["analyze", "x.wav"]).adapt == "none"
    import inspect

    from ser.analysis.pipeline import analyze
    from ser.serve.batch import BatchOptions

    assert inspect.signature(analyze).parameters["adapt"].default == "none" and BatchOptions().adapt == "none"
    files = _clips(tmp_path, 3)
    rows = _predict(["--model", str(adapt_model_dir), "--device", "cpu", *files], capsys)
    assert len(rows) == 3 and all("adaptation" not in r and "emotion" in r for r in rows)


def test_one_clip_batch_equals_no_adaptation_and_the_mode_is_recorded(adapt_model_dir, tmp_path, capsys):
    f = _clips(tmp_path, 1)
    plain = _predict(["--model", str(adapt_model_dir), "--device", "cpu", *f], capsys)[0]
    one = _predict(["--model", str(adapt_model_dir), "--device", "cpu", "--adapt", "batch", *f], capsys)[0]
    assert one["probabilities"] == pytest.approx(plain["probabilities"], abs=1e-5)
    assert one["adaptation"]["mode"] == "batch" and one["adaptation"]["used"] == "none"
    assert "needs at least" in one["adaptation"]["reason"]


def test_shrinkage_weight_grows_with_the_batch_and_a_batch_is_adapted(adapt_model_dir, tmp_path, capsys):
    files = _clips(tmp_path, 12)
    rows = _predict(["--model", str(adapt_model_dir), "--device", "cpu", "--adapt", "batch", *files], capsys)
    ad = rows[0]["adaptation"]
    assert ad["mode"] == "batch" and ad["clips"] == 12 and ad["group"] == "batch"
    if ad["used"] == "adapted":  # random heads: the guard may fall back; the weight is then not reported
        assert ad["weight"] == pytest.approx(11 / 21, abs=1e-3)
    # the numbers themselves: w = (n - 1) / (n - 1 + prior_clips), a one-clip group never moves
    rng = np.random.default_rng(0)
    F = 6
    ah = AdaptHead(np.zeros(F), np.ones(F), Head(np.zeros(F), np.ones(F), rng.standard_normal((3, F)), np.zeros(3)), 1.0)
    s = AdaptSettings(prior_clips=10, min_clips=2, min_spread=0.0)
    X = rng.standard_normal((31, F)) + 5.0
    z, rep = adapt_group(X, X @ ah.head.weight.T, ah, s)
    assert rep["weight"] == pytest.approx(30 / 40)
    mu = 0.75 * X.mean(0)
    np.testing.assert_allclose(z, ah.head.logits(X - mu), rtol=1e-5)  # prior_var 1 (+1e-6)
    assert adapt_group(X[:1], X[:1] @ ah.head.weight.T, ah, s)[0] is None


def test_the_guard_falls_back_when_everyone_shows_the_same_emotion():
    rng = np.random.default_rng(1)
    F = 8
    W = np.eye(3, F) * 3.0
    ah = AdaptHead(np.zeros(F), np.ones(F), Head(np.zeros(F), np.ones(F), W, np.zeros(3)), spread_ref=2.0)
    s = AdaptSettings(prior_clips=10, min_clips=5, min_spread=0.45)
    mixed = np.concatenate([np.eye(3, F)[k] + 0.1 * rng.standard_normal((10, F)) for k in range(3)])
    same = np.eye(3, F)[0] + 0.1 * rng.standard_normal((30, F))
    groups = ["mixed"] * 30 + ["same"] * 30
    X = np.concatenate([mixed, same])
    z, adapted, reports = adapt_logits(X, groups, X @ W.T, ah, s)
    assert reports["mixed"]["used"] == "adapted" and reports["same"]["used"] == "none"
    assert "one emotion" in reports["same"]["reason"] and not adapted[30:].any() and adapted[:30].all()
    np.testing.assert_allclose(z[30:], X[30:] @ W.T)  # the fallback is exactly the unadapted model
    # unguarded, the one-emotion group would be centred away from its emotion
    zu, _, _ = adapt_logits(X, groups, X @ W.T, ah, s, guard=False)
    assert (zu[30:].argmax(1) == 0).mean() < (z[30:].argmax(1) == 0).mean()


def test_group_centre_standardises_each_group_and_version():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(3, 2, (20, 2, 4)), rng.normal(-1, 0.5, (30, 2, 4))])
    Xn, prior_mean, prior_var = group_centre(X, ["a"] * 20 + ["b"] * 30)
    for m in (slice(0, 20), slice(20, 50)):
        for v in (0, 1):
            np.testing.assert_allclose(Xn[m, v].mean(0), 0, atol=1e-9)
            np.testing.assert_allclose(Xn[m, v].std(0), 1, atol=1e-3)
    np.testing.assert_allclose(prior_mean, (X[:20, 0].mean(0) + X[20:, 0].mean(0)) / 2)


def test_speaker_mode_reads_speakers_from_a_csv_or_the_folder(adapt_model_dir, tmp_path, capsys):
    from ser.cli import main
    from ser.cli.analyze import read_speakers

    files = _clips(tmp_path, 8, speakers=2)
    rows = _predict(["--model", str(adapt_model_dir), "--device", "cpu", "--adapt", "speaker", "--speakers", "folder",
                     *files], capsys)
    assert {r["adaptation"]["group"] for r in rows} == {"spk0", "spk1"}
    assert all(r["adaptation"]["clips"] == 4 for r in rows)
    csv = tmp_path / "who.csv"
    csv.write_text("file,speaker\n" + "".join(f"{Path(f).name},{'A' if i < 5 else 'B'}\n" for i, f in enumerate(files)))
    assert set(read_speakers(str(csv), files).values()) == {"A", "B"}
    csv.write_text("file,speaker\n" + f"{Path(files[0]).name},A\n")
    with pytest.raises(SERError, match="no speaker for 7 file"):
        read_speakers(str(csv), files)
    assert main(["predict", "--model", str(adapt_model_dir), "--adapt", "speaker", *files]) == 2  # no --speakers
    assert "--speakers" in capsys.readouterr().err


def test_a_model_without_adaptation_heads_says_so(tiny_model_dir, tmp_path, capsys):
    from ser.cli import main

    files = _clips(tmp_path, 2)
    assert main(["predict", "--model", str(tiny_model_dir), "--adapt", "batch", *files]) != 0
    assert "adaptation head" in capsys.readouterr().err
    from ser.analysis.pipeline import analyze

    with pytest.raises(ConfigError):
        analyze(DEMO, model=str(tiny_model_dir), adapt="batch")  # 'batch' is for predict; analyze has 'recording'
    with pytest.raises(ModelError, match="adaptation head"):
        analyze(DEMO, model=str(tiny_model_dir), adapt="recording", device="cpu")


def test_analyze_speaker_mode_centres_each_diarized_speaker(adapt_model_dir):
    from ser.emotion.model import load_model
    from ser.analysis.pipeline import analyze

    m = load_model(adapt_model_dir, device="cpu")
    a = analyze(DEMO, model=m, adapt="speaker", cache=None, num_speakers=2)  # espeak's two voices
    ad = a.provenance["adaptation"]
    assert ad["mode"] == "speaker" and ad["groups"] == "diarized speakers"
    assert set(ad["per_group"]) == {t.speaker for t in a.turns} and len(ad["per_group"]) >= 2
    r = analyze(DEMO, model=m, adapt="recording", cache=None, num_speakers=2).provenance["adaptation"]
    assert list(r["per_group"]) == ["recording"] and r["per_group"]["recording"]["clips"] == len(a.windows)
    plain = analyze(DEMO, model=m, cache=None, num_speakers=2, adapt="none")
    assert plain.provenance["adaptation"] == {"mode": "none"}
    assert [s.speaker for s in plain.segments] == [s.speaker for s in a.segments]



def test_adapt_probabilities_none_is_the_plain_model(adapt_model_dir):
    from ser.emotion.model import load_model

    m = load_model(adapt_model_dir, device="cpu")
    y = tone(1.5, freq=180.0, amp=0.2)
    X = m.pooled(y, 16_000)[None]
    p, adapted, _ = adapt_probabilities(m, X, ["g"], "none")
    np.testing.assert_allclose(p[0], m.predict_proba(y, 16_000), atol=1e-4)
    assert not adapted.any()


def test_api_analyze_takes_an_adapt_field(adapt_model_dir):
    from fastapi.testclient import TestClient

    from ser.serve.api import APISettings, create_app

    c = TestClient(create_app(APISettings(model=str(adapt_model_dir), device="cpu", workers=1)))
    data = DEMO.read_bytes()
    r = c.post("/v1/analyze", files={"file": ("demo.wav", data, "audio/wav")}, data={"adapt": "sometimes"})
    assert r.status_code == 400 and "adapt" in r.json()["error"]["message"]
    r = c.post("/v1/analyze", files={"file": ("demo.wav", data, "audio/wav")}, data={"adapt": "recording"})
    assert r.status_code == 200 and r.json()["provenance"]["adaptation"]["mode"] == "recording"


def test_the_shipped_model_adapts_and_its_card_reports_the_curve():
    import json as _json

    card = _json.loads((ROOT / "models" / "default" / "card.json").read_text())
    lo = card["adaptation"]["batch"]["leave_one_corpus_out"]
    assert set(lo["per_corpus"]) == {"ravdess", "ased", "emodb"}
    assert {"uar_none", "uar_3", "uar_10", "uar_30", "uar_100", "uar_all"} <= set(lo["mean"])
    assert lo["mean"]["uar_30"] > lo["mean"]["uar_none"]  # what it is shipped for
    assert lo["mean"]["stress"]["accuracy_adapted"] >= lo["mean"]["stress"]["accuracy_none"] - 0.10
    assert card["adaptation"]["speaker"]["temperature"] > 0


def test_shipped_model_batch_mode_on_real_clips(tmp_path, capsys):
    from conftest import RAVDESS, needs_ravdess  # noqa: F401

    if not RAVDESS.is_dir():
        pytest.skip(f"needs the RAVDESS copy at {RAVDESS}")
    files = sorted(str(p) for p in (RAVDESS / "Actor_01").glob("*.flac"))[:12]
    rows = _predict(["--device", "cpu", "--adapt", "batch", *files], capsys)
    assert len(rows) == 12 and all(r["adaptation"]["mode"] == "batch" and r["adaptation"]["clips"] == 12 for r in rows)
    assert {r["adaptation"]["used"] for r in rows} <= {"adapted", "none"}
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)


def test_ser_analyze_adapt_speaker_writes_the_mode_and_the_diarized_groups(adapt_model_dir, tmp_path):
    from ser.cli import main

    out = tmp_path / "out"
    assert main(["analyze", str(DEMO), "--model", str(adapt_model_dir), "--adapt", "speaker", "--out", str(out),
                 "--quiet", "--format", "json"]) == 0
    d = json.loads((out / "demo_dialogue.json").read_text())
    ad = d["provenance"]["adaptation"]
    assert ad["mode"] == "speaker" and set(ad["per_group"]) == {t["speaker"] for t in d["turns"]}
    assert d["provenance"]["batch_options"]["adapt"] == "speaker"
