"""Compute that shares the machine politely: the thread policy of every entry point.

Users run the dashboard with a browser open and other jobs beside it. torch's default on a
2-core machine — two OpenMP threads that *spin* at every barrier — loses badly there: when
one core is taken by another process, each parallel region waits for a thread that is not
running (a warm 30-s analysis went from 2.1 s to 6.7 s with one busy process beside it, and
to 60 s with two more low-priority jobs). So:

1. **Threads that yield, not spin** (:func:`set_environment`, run by ``import ser``, so
   before torch or any OpenMP/BLAS library starts in every entry point: the dashboard,
   ``ser`` and ``python -m ser.cli``, the API server, batch workers, Ray actors and the live
   worker, which all import ``ser`` first). It sets, unless already set:
   ``OMP_WAIT_POLICY=PASSIVE`` (GNU OpenMP, torch's: idle threads sleep at once),
   ``KMP_BLOCKTIME=0`` (Intel OpenMP, if a library brings it) and
   ``OPENBLAS_THREAD_TIMEOUT=4`` (OpenBLAS threads sleep after ~2^4 cycles of waiting).
2. **Threads per job** (:func:`job_threads`): a job sets torch's intra-op threads *for its
   own thread* (OpenMP's thread count is per calling thread, so concurrent analyses in one
   server each keep theirs) and BLAS's for the process while it runs:

   - audio up to ``SER_SHORT_JOB_S`` (default 120 s), and every live window: **one thread**;
     a short job gains little from a second thread even on an idle machine and loses most
     when the machine is busy;
   - longer recordings: **the cores that are free now** — the cores this process may use
     (``os.sched_getaffinity``) minus those other processes kept busy over the last 0.2 s
     (``/proc/stat``, our own CPU time subtracted) — shared among the jobs this process is
     running at once, at least one.

Overrides: ``SER_THREADS=N`` fixes every job's thread count (``ser analyze --threads N``
does the same for one command); setting any of the variables above yourself keeps your
value; ``SER_THREAD_POLICY=off`` leaves torch's and the libraries' defaults alone.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

ENV_DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "KMP_BLOCKTIME": "0",
    "OPENBLAS_THREAD_TIMEOUT": "4",
}
SHORT_JOB_S = 120.0
_LOCK = threading.Lock()
_ACTIVE = 0  # jobs of this process running now


def enabled() -> bool:
    return os.environ.get("SER_THREAD_POLICY", "on").lower() not in ("off", "0", "false", "no")


def set_environment() -> dict[str, str]:
    """Set the yielding-thread variables that are not set yet; returns what it set. Must run
    before torch (or numpy's OpenBLAS) is first imported to take effect; harmless after."""
    if not enabled():
        return {}
    changed = {}
    for k, v in ENV_DEFAULTS.items():
        if k not in os.environ:
            os.environ[k] = v
            changed[k] = v
    return changed


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; containers narrow it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat; None where it is missing."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def free_cores(sample_s: float = 0.2) -> float:
    """Cores not kept busy by other processes over the next ``sample_s`` seconds (this
    process's own CPU time does not count as busy). Without /proc, all usable cores."""
    cores = usable_cores()
    a = _cpu_times()
    if a is None:
        return float(cores)
    own0, t0 = time.process_time(), time.monotonic()
    time.sleep(sample_s)
    b = _cpu_times()
    own, wall = time.process_time() - own0, time.monotonic() - t0
    if b is None or b[1] <= a[1] or wall <= 0:
        return float(cores)
    machine = os.cpu_count() or cores
    busy_cores = (b[0] - a[0]) / (b[1] - a[1]) * machine  # all processes, in cores
    others = max(0.0, busy_cores - own / wall)
    return max(0.0, min(float(cores), cores - others))


def threads_for(duration_s: float | None, *, concurrent: int = 1) -> int:
    """The intra-op thread count for a job over ``duration_s`` seconds of audio (None: unknown,
    taken as short) when ``concurrent`` jobs of this process run at once."""
    fixed = os.environ.get("SER_THREADS", "").strip()
    if fixed.isdigit() and int(fixed) > 0:
        return int(fixed)
    short = float(os.environ.get("SER_SHORT_JOB_S", SHORT_JOB_S))
    if duration_s is None or duration_s <= short:
        return 1
    return max(1, int(free_cores() + 0.5) // max(1, concurrent))


@contextmanager
def job_threads(duration_s: float | None = None, threads: int | None = None) -> Iterator[int]:
    """Run a job (an analysis, a batch file) with the policy's thread count in this thread:
    ``threads`` when given, else :func:`threads_for` its duration and the jobs running beside
    it. Restores this thread's previous torch setting afterwards. Yields the count used."""
    global _ACTIVE
    with _LOCK:
        _ACTIVE += 1
        concurrent = _ACTIVE
    try:
        if not enabled() and not threads:
            yield 0
            return
        n = threads if threads and threads > 0 else threads_for(duration_s, concurrent=concurrent)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with _blas_limit(n):
                yield n
        finally:
            torch.set_num_threads(before)
    finally:
        with _LOCK:
            _ACTIVE -= 1


@contextmanager
def _blas_limit(n: int) -> Iterator[None]:
    """numpy's BLAS pool limited to ``n`` threads while a job runs (process-wide: the smallest
    limit of the jobs running wins, which never oversubscribes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: leave BLAS alone
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def policy() -> dict:
    """What is in force in this process (for tests, the dashboard's About and bug reports)."""
    out = {k: os.environ.get(k) for k in ENV_DEFAULTS}
    out["SER_THREADS"] = os.environ.get("SER_THREADS")
    out["enabled"] = enabled()
    out["usable_cores"] = usable_cores()
    import sys

    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out
