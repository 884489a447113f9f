"""The command line: JSON lines out, clear errors, never a traceback for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from audiogen import encode, tone, write


def ser(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ser.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_help_and_version():
    r = ser("--help")
    assert r.returncode == 0 and "predict" in r.stdout and "train" in r.stdout and "evaluate" in r.stdout
    assert ser("--version").stdout.startswith("ser ")


def test_predict_json_lines_good_and_bad(tmp_path, tiny_model_dir):
    good = write(tmp_path / "good.m4a", tone(2.0, 44_100), 44_100, "m4a")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = tmp_path / "silent.wav"
    silent.write_bytes(encode(tone(1.0) * 0, 16_000, "wav"))
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio at all " * 20)
    r = ser("predict", "--model", tiny_model_dir, "--device", "cpu", good, empty, silent, notes, tmp_path / "missing.wav")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(p) for p in (good, empty, silent, notes, tmp_path / "missing.wav")]
    assert set(rows[0]) == {"file", "emotion", "probabilities", "uncertain", "model"}
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-3
    assert "empty (0 bytes)" in rows[1]["error"]
    assert "digital silence" in rows[2]["error"]
    assert "text file" in rows[3]["error"]
    assert "does not exist" in rows[4]["error"]


def test_unknown_model_is_a_clear_error(tmp_path):
    clip = write(tmp_path / "a.wav", tone(1.0), 16_000, "wav")
    r = ser("predict", "--model", tmp_path / "no-model", clip)
    assert r.returncode == 2 and "No model folder found" in r.stderr and "Traceback" not in r.stderr


def test_train_on_a_missing_folder_is_a_clear_error(tmp_path):
    r = ser("train", "--data", tmp_path / "nothing", "--corpus", "ravdess", "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 2 and "is not a folder" in r.stderr and "Traceback" not in r.stderr
    r = ser("train", "--data", tmp_path, "--corpus", "iemocap", "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 2 and "Unknown corpus 'iemocap'" in r.stderr


def test_evaluate_writes_metrics_and_confusion_png(tmp_path, tiny_model_dir):
    root = tmp_path / "rav"
    for actor in (21, 22):
        for emo in ("01", "05"):
            d = root / f"Actor_{actor}"
            d.mkdir(parents=True, exist_ok=True)
            write(d / f"03-01-{emo}-01-01-01-{actor}.wav", tone(1.5, 16_000, freq=150 + 30 * actor), 16_000, "wav")
    r = ser("evaluate", "--model", tiny_model_dir, "--data", root, "--corpus", "ravdess", "--speakers", "21", "22",
            "--device", "cpu", "--out", tmp_path / "ev", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "UAR" in r.stdout and "confusion" in r.stdout
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 4 and len(metrics["confusion"]) == 8
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
