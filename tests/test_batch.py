"""Batch analysis: resumable after a kill, parallel jobs, one summary row per file."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from audiogen import speak, write
from ser.serve.batch import BatchOptions, analyze_file, is_done, output_stem


SENTENCES = ["The meeting starts at nine tomorrow morning.", "I am not sure that was a good idea at all.",
             "Please send me the figures before Friday.", "We finally found the bug in the decoder."]


def _corpus(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    voices = ["en-us+m3", "en-gb+f3"]
    for i in range(n):
        y = np.concatenate([speak(SENTENCES[i % 4], voices[i % 2], pitch=40 + 5 * i),
                            np.zeros(4000, np.float32), speak(SENTENCES[(i + 1) % 4], voices[i % 2], pitch=40 + 5 * i)])
        write(folder / f"clip{i:02d}.wav", y, 16000, "wav")
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt junk")
    return sorted(folder.glob("*.wav"))


def _cmd(inp, out, model, *extra):
    return [sys.executable, "-m", "ser.cli", "analyze", str(inp), "--out", str(out), "--model", str(model),
            "--speakers", "1", "--format", "json,rttm", "--quiet", *extra]


def _summary(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_killed_batch_resumes_and_does_every_file_exactly_once(tmp_path, tiny_model_dir):
    files = _corpus(tmp_path / "in", 8)
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(tmp_path / "in", out, tiny_model_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("clip*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: (p.stat().st_mtime_ns, json.loads(p.read_text())["provenance"]["created"])
             for p in out.glob("clip*.json")}
    assert 2 <= len(first) < 8, f"the first run should be cut short, got {len(first)} files done"
    # the kill may leave a temporary file, never a half-written result
    for p in out.glob("clip*.json"):
        json.loads(p.read_text())

    r = subprocess.run(_cmd(tmp_path / "in", out, tiny_model_dir), capture_output=True, text=True, timeout=600)
    assert r.returncode == 1  # broken.wav
    assert f"{len(first)} already done" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr
    rows = _summary(out)
    assert [row["file"] for row in rows] == [str(f) for f in files]  # each input exactly once, in order
    assert [row["status"] for row in rows].count("ok") == 8
    assert next(row for row in rows if row["file"].endswith("broken.wav"))["status"] == "error"
    for name, (mtime, created) in first.items():  # done before the kill: not redone
        p = out / name
        assert p.stat().st_mtime_ns == mtime and json.loads(p.read_text())["provenance"]["created"] == created
    assert len(list(out.glob("clip*.json"))) == 8 and len(list(out.glob("clip*.rttm"))) == 8

    # a third run has nothing to do; --force redoes everything
    r = subprocess.run(_cmd(tmp_path / "in", out, tiny_model_dir), capture_output=True, text=True, timeout=600)
    assert "0 analysed, 8 already done" in r.stdout


def test_parallel_jobs_give_the_same_results(tmp_path, tiny_model_dir):
    _corpus(tmp_path / "in", 3)
    r1 = subprocess.run(_cmd(tmp_path / "in", tmp_path / "one", tiny_model_dir), capture_output=True, text=True,
                        timeout=600)
    r2 = subprocess.run(_cmd(tmp_path / "in", tmp_path / "two", tiny_model_dir, "--jobs", "2"), capture_output=True,
                        text=True, timeout=600)
    assert r1.returncode == r2.returncode == 1, (r1.stderr, r2.stderr)
    for i in range(3):
        a = json.loads((tmp_path / "one" / f"clip{i:02d}.json").read_text())
        b = json.loads((tmp_path / "two" / f"clip{i:02d}.json").read_text())
        assert a["turns"] == b["turns"]
        assert [s["probabilities"] for s in a["segments"]] == [s["probabilities"] for s in b["segments"]]


def test_analyze_file_is_pure_and_marks_done(tmp_path, tiny_model_dir):
    f = tmp_path / "in" / "clip00.wav"
    _corpus(tmp_path / "in", 1)
    opts = BatchOptions(model=str(tiny_model_dir), num_speakers=1, formats=("json",))
    row = analyze_file(f, tmp_path / "out", opts)
    assert row["status"] == "ok" and row["speakers"] == 1
    assert is_done(tmp_path / "out" / "clip00.json", opts)
    assert not is_done(tmp_path / "out" / "clip00.json", BatchOptions(model=str(tiny_model_dir), num_speakers=2))
    # a result made by another diarizer version or another ser is not "done": a resumed batch redoes it
    done = tmp_path / "out" / "clip00.json"
    original = done.read_text()
    d = json.loads(original)
    d["provenance"]["diarizer"]["merge_similarity"] = 0.5
    done.write_text(json.dumps(d))
    assert not is_done(done, opts)
    d = json.loads(original)
    d["provenance"]["ser_version"] = "0.0.1"
    done.write_text(json.dumps(d))
    assert not is_done(done, opts)
    done.write_text(original)
    assert is_done(done, opts)
    bad = analyze_file(tmp_path / "in" / "broken.wav", tmp_path / "out", opts)
    assert bad["status"] == "error" and "broken.wav" in bad["error"]
    assert output_stem(tmp_path / "in" / "a" / "b.wav", tmp_path / "in") == "a__b"


def test_a_model_retrained_into_the_same_folder_is_not_taken_for_the_old_one(tmp_path, tiny_model_dir):
    import shutil

    import torch

    from ser.emotion.folder import ModelCard, save_model
    from ser.emotion.nets import build_model
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model)
    _corpus(tmp_path / "in", 1)
    opts = BatchOptions(model=str(model), num_speakers=1, formats=("json",))
    assert analyze_file(tmp_path / "in" / "clip00.wav", tmp_path / "out", opts)["status"] == "ok"
    done = tmp_path / "out" / "clip00.json"
    assert len(json.loads(done.read_text())["provenance"]["model"]["fingerprint"]) == 16
    assert is_done(done, opts)
    card = ModelCard.from_dict(json.loads((model / "card.json").read_text()))
    torch.manual_seed(1)  # same name, version and card, other weights
    save_model(build_model("sercnn", card.feature_config, len(card.labels), **card.arch_args).eval(), card,
               model)
    assert not is_done(done, opts)


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    from pathlib import Path
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        kids = {p for p, pp in parents.items() if pp in frontier} - found
        found |= kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_parallel_run_leaves_no_worker_and_no_temporary_file(tmp_path, tiny_model_dir):
    """SIGKILL of the main process of `--jobs 2`: its workers are gone within 5 s and write nothing
    after it; a temporary file the kill leaves is removed by the next run."""
    _corpus(tmp_path / "in", 8)
    out = tmp_path / "out"
    out.mkdir()
    # a temporary left by a long-dead process (a kill between write and rename), and one of a live process
    stale = out / ".clip05.json.part999999999"
    stale.write_text("{half")
    live = out / f".clip06.json.part{os.getpid()}"
    live.write_text("{in progress")
    proc = subprocess.Popen(_cmd(tmp_path / "in", out, tiny_model_dir, "--jobs", "2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    workers: set[int] = set()
    while time.time() < deadline and len(list(out.glob("clip*.json"))) < 1:
        workers |= _descendants(proc.pid)
        time.sleep(0.05)
    workers |= _descendants(proc.pid)
    assert len(workers) >= 2, workers  # the two workers (and multiprocessing's resource tracker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_kill = time.time()
    while time.time() < t_kill + 5 and any(_alive(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in workers if _alive(p)], "workers outlived the killed run by 5 s"
    after_kill = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    time.sleep(1.0)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == after_kill  # nothing written since
    assert not stale.exists() or stale.name in after_kill

    r = subprocess.run(_cmd(tmp_path / "in", out, tiny_model_dir, "--jobs", "2"), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]  # broken.wav
    left = sorted(p.name for p in out.glob(".*"))
    assert left == [live.name], left  # the dead run's temporaries are gone; a live process's is kept
    assert [row["status"] for row in _summary(out)].count("ok") == 8
