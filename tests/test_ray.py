"""`ser analyze --engine ray` on a real two-node Ray cluster on this machine (a head and a worker
node, separate raylets), compared with the local engine; a worker node is killed mid-run.
Quick runs can skip these with ``-m "not ray"``; `make test` (CI) runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]
SER = [sys.executable, "-m", "ser.cli"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Eight 10-s recordings of two synthetic voices taking turns, and one corrupt WAV."""
    import soundfile as sf

    from ser.analysis.demo import synthesize_dialogue

    root = tmp_path_factory.mktemp("corpus")
    y, sr = synthesize_dialogue()[0], 16_000
    for i in range(8):
        sf.write(root / f"talk{i}.flac", np.roll(y, i * sr)[: 10 * sr], sr)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    return root


def _ray_processes(session: str) -> list[str]:
    r = subprocess.run(["pgrep", "-af", session], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                      "include_dashboard": False})
    worker = c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    session = Path(c.head_node.get_session_dir_path()).name
    try:
        yield c, worker
    finally:
        c.shutdown()
        deadline = time.time() + 20
        while _ray_processes(session) and time.time() < deadline:
            time.sleep(0.5)
        left = _ray_processes(session)
        assert not left, f"Ray processes left behind after the cluster was torn down: {left}"


def _results(folder: Path) -> dict[str, dict]:
    """Each JSON result without what may differ between runs (timings, creation time)."""
    out = {}
    for p in sorted(folder.glob("*.json")):
        d = json.loads(p.read_text())
        d["provenance"].pop("timings_s", None)
        d["provenance"].pop("created", None)
        out[p.name] = d
    return out


def _summary(folder: Path) -> list[tuple[str, str]]:
    import csv

    with open(folder / "summary.csv", newline="") as f:
        return [(Path(r["file"]).name, r["status"], r["speakers"], r["turns"]) for r in csv.DictReader(f)]


def test_ray_engine_on_a_two_node_cluster_matches_local_and_survives_a_node_kill(corpus, cluster, tmp_path):
    c, worker = cluster
    local, dist = tmp_path / "local", tmp_path / "ray"
    # one torch thread, as each Ray actor here: results are bitwise equal only at the same thread count
    r = subprocess.run([*SER, "analyze", str(corpus), "--out", str(local), "--quiet", "--jobs", "1", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "8 analysed, 0 already done, 1 failed" in r.stdout, r.stdout + r.stderr[-2000:]

    t0 = time.time()
    proc = subprocess.Popen([*SER, "analyze", str(corpus), "--engine", "ray", "--address", c.address,
                             "--actors", "2", "--out", str(dist), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (dist.is_dir() and list(dist.glob("*.json"))):  # the run is under way: kill the worker node
        assert proc.poll() is None and time.time() - t0 < 300, "the Ray run produced nothing"
        time.sleep(0.1)
    done_before_kill = len(list(dist.glob("*.json")))
    c.remove_node(worker, allow_graceful=False)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err[-3000:]
    assert "8 analysed, 0 already done, 1 failed" in out, out + err[-3000:]
    assert done_before_kill < 8, "the worker node was killed after the run had finished"

    # the same results file for file, the same summary, the corrupt file a row with its error
    assert _results(dist) == _results(local)
    for f in dist.glob("*.json"):  # each actor ran the thread policy's choice: its CPUs, fixed
        assert json.loads(f.read_text())["provenance"]["threads"] == {"torch": 1, "mode": "fixed"}, f
    assert _summary(dist) == _summary(local)
    rows = _summary(dist)
    assert len(rows) == 9 and len({f for f, *_ in rows}) == 9  # every file exactly once, in input order
    assert [f for f, *_ in rows] == sorted(f for f, *_ in rows)
    assert ("corrupt.wav", "error", "", "") in rows
    assert not list(dist.glob(".*part*")), "temporaries left behind"

    # a rerun skips everything already done (the corrupt file is tried again, as locally)
    r = subprocess.run([*SER, "analyze", str(corpus), "--engine", "ray", "--address", c.address, "--out", str(dist),
                        "--quiet"], capture_output=True, text=True, timeout=600)
    assert "0 analysed, 8 already done, 1 failed" in r.stdout, r.stdout + r.stderr[-2000:]
    assert _results(dist) == _results(local)


def test_ray_predict_matches_local(corpus, cluster):
    c, _ = cluster
    files = [str(corpus / "talk0.flac"), str(corpus / "corrupt.wav"), str(corpus / "talk3.flac")]
    local = subprocess.run([*SER, "predict", *files], capture_output=True, text=True, timeout=300)
    dist = subprocess.run([*SER, "predict", *files, "--engine", "ray", "--address", c.address],
                          capture_output=True, text=True, timeout=300)
    assert dist.returncode == local.returncode == 1
    a = [json.loads(line) for line in local.stdout.splitlines()]
    b = [json.loads(line) for line in dist.stdout.splitlines()]
    assert [x["file"] for x in b] == files
    assert a[0] == b[0] and a[2] == b[2]  # the same probabilities, to the printed digit
    assert "could not be decoded" in a[1]["error"] and "could not be decoded" in b[1]["error"]
