"""The thread policy (ser.threads) is in force in a fresh process of every entry point: the
library pools' variables set before numpy and torch start, and each job's torch threads chosen
from the free cores (one for a clip or a live window).
What is checked is the environment and torch's settings in that process, never a timing.
The API server's check is in tests/test_api_reliability.py, the dashboard server's in
tests/test_serve.py, the Ray actors' in tests/test_ray.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from audiogen import encode

ROOT = Path(__file__).resolve().parent.parent
POLICY_VARS = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT", "SER_THREADS", "SER_THREAD_POLICY",
               "SER_SHORT_JOB_S")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    return {**env, "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1", **extra}


def _py(code: str, **env) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(**env), cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_import_ser_sets_the_pools_variables_before_numpy_and_keeps_the_users_choice():
    code = ("import sys; assert 'numpy' not in sys.modules\n"
            "import os, ser; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), os.environ.get('KMP_BLOCKTIME'))")
    assert _py(code) == "4 0"
    assert _py(code, OPENBLAS_THREAD_TIMEOUT="10") == "10 0"  # the user's own setting stays
    assert _py(code, SER_THREAD_POLICY="off") == "None None"


def test_short_jobs_get_one_thread_long_ones_the_free_cores_shared_among_jobs(monkeypatch):
    from ser import threads

    monkeypatch.delenv("SER_THREADS", raising=False)
    monkeypatch.setattr(threads, "free_cores", lambda: 4.0)
    assert threads.threads_for(4.0) == 1 and threads.threads_for(None) == 1  # a clip, a live window
    assert threads.threads_for(30.0) == 4 and threads.threads_for(600.0, concurrent=2) == 2
    assert threads.threads_for(600.0, concurrent=8) == 1
    monkeypatch.setattr(threads, "free_cores", lambda: 1.0)  # another process holds a core
    assert threads.threads_for(30.0) == 1
    monkeypatch.setenv("SER_THREADS", "3")
    assert threads.threads_for(4.0) == 3 and threads.mode() == "fixed"


def _busy_elsewhere(nice: int = 0) -> float:
    """What the monitor measures with one busy process of niceness ``nice`` beside this one."""
    import time

    from ser.threads import _CoreMonitor

    busy = subprocess.Popen(["nice", "-n", str(nice), sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return _CoreMonitor()._sample(0.8)
    finally:
        busy.kill()
        busy.wait()


def test_the_monitor_counts_a_busy_process_but_not_a_niced_one():
    from ser.threads import _CoreMonitor

    idle = _CoreMonitor()._sample(0.5)
    normal, niced = _busy_elsewhere(0), _busy_elsewhere(19)
    assert normal >= idle + 0.6, (idle, normal)  # one core held at normal priority
    assert niced <= idle + 0.4, (idle, niced)  # a nice-19 job gives its core to ours


def test_a_job_sets_torch_threads_for_its_own_thread_only_and_restores_them():
    import torch

    from ser.threads import job_threads

    before = torch.get_num_threads()
    seen = {}

    def job():
        with job_threads(4.0) as n:
            seen["inside"] = (n, torch.get_num_threads())
            seen["main_during"] = main_during.wait(5) and main_value[0]
        seen["after"] = torch.get_num_threads()

    main_during, main_value = threading.Event(), [None]
    t = threading.Thread(target=job)
    t.start()
    import time

    time.sleep(0.2)
    main_value[0] = torch.get_num_threads()
    main_during.set()
    t.join()
    assert seen["inside"] == (1, 1)
    assert seen["main_during"] == before  # the other thread's analysis did not change this thread's count
    assert torch.get_num_threads() == before


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    from ser.analysis.demo import synthesize_dialogue

    root = tmp_path_factory.mktemp("clips")
    y = synthesize_dialogue()[0]
    paths = []
    for i in range(2):
        p = root / f"talk{i}.wav"
        p.write_bytes(encode(np.roll(y, i * 16_000)[: 8 * 16_000], 16_000, "wav"))
        paths.append(p)
    return paths


def test_the_cli_and_its_batch_workers_run_under_the_policy(clips, tmp_path):
    """`ser analyze` in one process and with --jobs 2 (spawned worker processes): every result
    says how many torch threads it ran on and how that was chosen."""
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        r = subprocess.run([sys.executable, "-m", "ser.cli", "analyze", *map(str, clips), "--format", "json",
                            "--out", str(out), "--jobs", str(jobs), "--quiet"],
                           capture_output=True, text=True, env=_clean_env(), cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        for p in clips:
            threads = json.loads((out / f"{p.stem}.json").read_text())["provenance"]["threads"]
            if jobs == 1:  # the free cores, read in that process
                assert threads["mode"] == "adaptive" and 1 <= threads["torch"] <= os.cpu_count(), threads
            else:  # parallel workers: one thread each, never jobs x cores
                assert threads == {"torch": 1, "mode": "fixed"}, threads


def test_ser_predict_runs_a_clip_on_one_thread(clips):
    code = ("import sys, torch\n"
            "from ser.cli import main\n"
            "seen = []\n"
            "from ser.emotion.model import EmotionModel\n"
            "real = EmotionModel.predict\n"
            "EmotionModel.predict = lambda self, *a, **k: seen.append(torch.get_num_threads()) or real(self, *a, **k)\n"
            f"main(['predict', {str(clips[0])!r}])\n"
            "import os; print('threads', seen, os.environ['OPENBLAS_THREAD_TIMEOUT'])\n")
    assert _py(code).splitlines()[-1] == "threads [1] 4"


def test_the_live_worker_process_runs_under_the_policy():
    from ser.emotion.model import load_model
    from ser.serve.live import LiveScorer

    with LiveScorer(load_model("default", device="cpu"), worker="process") as s:
        assert s.wait_ready(120)
        p = s.worker_policy
    assert p["OPENBLAS_THREAD_TIMEOUT"] == "4" and p["torch_threads"] == 1 and p["mode"] == "adaptive", p


def test_an_adaptive_job_follows_the_free_cores_while_it_runs(monkeypatch):
    import torch

    from ser import threads

    monkeypatch.delenv("SER_THREADS", raising=False)
    monkeypatch.setattr(threads, "RECHECK_S", 0.0)
    free = [1.0]
    monkeypatch.setattr(threads, "free_cores", lambda: free[0])
    with threads.job_threads(600.0) as n:
        assert n == 1 and torch.get_num_threads() == 1
        free[0] = 2.0  # the browser stopped drawing
        threads.adjust()
        assert torch.get_num_threads() == 2
        free[0] = 0.9
        threads.adjust()
        assert torch.get_num_threads() == 1 and threads.used() == [1, 2, 1]
    threads.adjust()  # outside a job: nothing
    assert threads.used() == []
    with threads.job_threads(600.0, threads=2):  # fixed: never adjusted
        free[0] = 1.0
        threads.adjust()
        assert torch.get_num_threads() == 2 and threads.used() == []


def test_independent_tasks_run_on_one_torch_thread_per_worker_and_report_in_the_calling_thread(monkeypatch):
    import torch

    from ser import threads

    monkeypatch.delenv("SER_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "free_cores", lambda: 1.0)  # one core busy elsewhere
    seen, done = [], []

    def task(x: int) -> int:
        seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_inference_mode_enabled()))
        return x * x

    caller = threading.current_thread().name
    assert threads.task_workers() == 1  # outside a job: as before
    with threads.job_threads(600.0):
        assert threads.task_workers() == 3  # a core busy elsewhere: one more worker than cores
        out = threads.parallel_map(task, list(range(20)), on_done=lambda k: done.append((k, threading.current_thread().name)))
    assert out == [x * x for x in range(20)]
    assert {n for n, _, _ in seen} <= {f"ser-task_{i}" for i in range(3)} and all(t == 1 and inf for _, t, inf in seen)
    assert [k for k, _ in done] == list(range(1, 21)) and {n for _, n in done} == {caller}
    with threads.job_threads(600.0, threads=2):  # a fixed count: one task at a time, on its threads
        assert threads.task_workers() == 1
    with threads.job_threads(4.0):  # a clip, a live window
        assert threads.task_workers() == 1
    monkeypatch.setattr(threads, "free_cores", lambda: 2.0)
    with threads.job_threads(600.0):  # idle: one worker per core
        assert threads.task_workers() == 2

    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("task 3 failed")
        return x

    with threads.job_threads(600.0), pytest.raises(ValueError, match="task 3"):
        threads.parallel_map(boom, list(range(8)))
