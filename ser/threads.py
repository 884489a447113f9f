"""Compute that shares the machine politely: the thread policy of every entry point.

Users run the dashboard with a browser open and other jobs beside it. torch's default on a
2-core machine is two OpenMP threads per parallel region; when another process holds one
core, every region waits at its barrier for a thread that is not running: a warm 30-s
analysis took 1.39 s idle and 4.71 s with one busy process beside it (5.37 s with two).
What helps is not how the threads wait but how many there are (``bench/contention.py``,
``docs/speed.md``): two *yielding* threads (``OMP_WAIT_POLICY=PASSIVE``) made the idle
analysis 2.6× slower (3.4 s: every one of its ~1000 small regions wakes a sleeping thread)
and stayed slow when loaded; one thread is 1.95 s idle and 1.97 s loaded. So:

1. **Threads per job, from the cores that are free now** (:func:`job_threads`). A daemon
   thread (started by the first job) samples ``/proc/stat`` every half second: the cores of
   this process's affinity minus those other processes keep busy at normal priority (time of
   niced processes does not count — our threads take the core from them — and this process's
   own CPU time is subtracted). A job's torch intra-op threads = the free cores, shared among
   the jobs this process runs at once, at least one; a clip of up to ``SER_SHORT_JOB_S``
   (10 s: ``ser predict``, the API's classify) and every live window get one. torch's count
   is set *for the job's own thread* (OpenMP's count is per calling thread), so concurrent
   analyses in one server each keep theirs, and restored afterwards.
2. **Library pools that do not spin** (:func:`set_environment`, run by ``import ser``, so
   before numpy or torch start in every entry point — the dashboard, ``ser`` and ``python -m
   ser.cli``, the API server, batch workers, Ray actors and the live worker all import ``ser``
   first): ``OPENBLAS_THREAD_TIMEOUT=4`` (numpy's BLAS threads sleep after ~2^4 cycles instead of
   spinning ~2^28 after each call, taking a core from torch's threads) and ``KMP_BLOCKTIME=0``
   (Intel OpenMP, where a library brings it). GNU OpenMP (torch's) keeps its default: a short
   spin, then sleep.

Overrides: ``SER_THREADS=N`` fixes every job's torch threads (``ser analyze --threads N`` for
one command); a variable above that you set yourself keeps your value;
``SER_THREAD_POLICY=off`` leaves torch's and the libraries' defaults alone.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ENV_DEFAULTS = {
    "OPENBLAS_THREAD_TIMEOUT": "4",  # numpy's BLAS threads sleep after ~2^4 cycles instead of ~2^28
    "KMP_BLOCKTIME": "0",  # Intel OpenMP, where a library brings it: no spinning after a region
}
SHORT_JOB_S = 10.0
SAMPLE_S = 0.5
_LOCK = threading.Lock()
_ACTIVE = 0  # jobs of this process running now


def enabled() -> bool:
    return os.environ.get("SER_THREAD_POLICY", "on").lower() not in ("off", "0", "false", "no")


def set_environment() -> dict[str, str]:
    """Set the library variables of the policy that are not set yet; returns what it set. Must
    run before numpy or torch is first imported to take effect; harmless after."""
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
    """(busy at normal priority, total) jiffies of the whole machine from /proc/stat; None where
    it is missing. Time of niced processes (the ``nice`` column) is not counted as busy: our
    threads, at normal priority, take the core from them (CFS gives nice 19 ~1.5 %)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [float(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    v += [0.0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + system + irq + softirq + steal, sum(v)


class _CoreMonitor:
    """How many cores other processes keep busy, sampled every ``SAMPLE_S`` by a daemon thread
    started on first use, so a job reads it without waiting. This process's own CPU time is
    subtracted (its analyses do not count against themselves)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.others: float | None = None
        self.thread: threading.Thread | None = None

    def _sample(self, seconds: float) -> float | None:
        a, own0, t0 = _cpu_times(), time.process_time(), time.monotonic()
        time.sleep(seconds)
        b, own, wall = _cpu_times(), time.process_time() - own0, time.monotonic() - t0
        if a is None or b is None or b[1] <= a[1] or wall <= 0:
            return None
        busy = (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)
        return max(0.0, busy - own / wall)

    def _run(self) -> None:
        while True:
            others = self._sample(SAMPLE_S)
            if others is None:
                return
            with self.lock:
                self.others = others

    def busy_elsewhere(self) -> float | None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="ser-core-monitor", daemon=True)
                self.thread.start()
            others = self.others
        if others is None:  # the first job of the process: a short sample of its own
            others = self._sample(0.1)
        return others


_MONITOR = _CoreMonitor()


def free_cores() -> float:
    """Usable cores not kept busy by other processes at normal priority, over the last half
    second. Without /proc, all usable cores."""
    cores = usable_cores()
    others = _MONITOR.busy_elsewhere()
    if others is None:
        return float(cores)
    return max(0.0, min(float(cores), cores - others))


def _short(duration_s: float | None) -> bool:
    """A clip or a live window (unknown length counts as short): one thread."""
    return duration_s is None or duration_s <= float(os.environ.get("SER_SHORT_JOB_S", SHORT_JOB_S))


def threads_for(duration_s: float | None, *, concurrent: int = 1) -> int:
    """The intra-op thread count for a job over ``duration_s`` seconds of audio (None: unknown,
    taken as short) when ``concurrent`` jobs of this process run at once."""
    fixed = os.environ.get("SER_THREADS", "").strip()
    if fixed.isdigit() and int(fixed) > 0:
        return int(fixed)
    if _short(duration_s):
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
        if not enabled() and not threads:  # torch's own default, as it is
            import torch

            yield torch.get_num_threads()
            return
        n = threads if threads and threads > 0 else threads_for(duration_s, concurrent=concurrent)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(n)
        adaptive = mode(threads) == "adaptive" and duration_s is not None
        _JOB.state = {"duration_s": duration_s, "n": n, "used": [n], "checked": time.monotonic()} if adaptive else None
        try:
            yield n
        finally:
            _JOB.state = None
            torch.set_num_threads(before)
    finally:
        with _LOCK:
            _ACTIVE -= 1


_JOB = threading.local()  # the adaptive job running in this thread, if any
RECHECK_S = 0.5


def adjust() -> None:
    """Inside an adaptive job: re-read the free cores (at most every half second; the monitor's
    figure, no waiting) and change this thread's torch threads if they changed — a browser that
    was busy drawing when the analysis started, and is idle now, gives its core back. Called at
    the pipeline's progress points; costs nothing outside a job."""
    state = getattr(_JOB, "state", None)
    if state is None or time.monotonic() - state["checked"] < RECHECK_S:
        return
    state["checked"] = time.monotonic()
    with _LOCK:
        concurrent = max(1, _ACTIVE)
    n = threads_for(state["duration_s"], concurrent=concurrent)
    if n != state["n"]:
        import torch

        torch.set_num_threads(n)
        state["n"] = n
        state["used"].append(n)


def task_workers() -> int:
    """Workers for the independent tasks (batches, turns) of the adaptive job in this thread,
    each on one intra-op thread: the usable cores shared among this process's jobs, and one
    more while another process keeps a core busy. Why one more: the scheduler shares the
    cores by runnable thread, so beside one busy process two workers get 2/3 of a 2-core
    machine (at best 1.5× the idle time) and three get 3/4 (1.33×); the analysis a person waits
    for goes first, and workers never wait for each other, so the extra one costs only
    switches (measured: a 30-s analysis 1.14 → 1.08 s with a busy core, no change idle). Our own
    concurrent jobs never get an extra one. 1 outside an adaptive job (fixed counts, the policy
    off) and for a clip or a live window."""
    state = getattr(_JOB, "state", None)
    if state is None or not enabled():
        return 1
    if _short(state["duration_s"]):
        return 1  # a clip or a live window: one thread, as its torch count
    with _LOCK:
        concurrent = max(1, _ACTIVE)
    cores = usable_cores()
    n = max(1, cores // concurrent)
    if concurrent == 1 and cores > 1 and free_cores() < cores - 0.5:
        n += 1  # another process holds a core: one more worker (below)
    return n


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, on_done: Callable[[int], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]``, the items taken one at a time by :func:`task_workers` threads
    on one torch thread each, in inference mode. Why not one task on two intra-op threads: with
    another process busy on one core, every parallel region waits at its barrier for the thread
    that lost its core, while independent tasks just go on — the worker on the free core takes
    more of them, the one sharing a core fewer (the busy core's half is used instead of lost).
    Give the largest items first. ``on_done(k)`` is called in *this* thread after each of the
    ``k`` results (progress bars belong to the calling thread). Exceptions propagate."""
    items = list(items)
    workers = min(task_workers(), len(items))
    if workers <= 1:
        out = []
        for k, x in enumerate(items, 1):
            out.append(fn(x))
            if on_done is not None:
                on_done(k)
        return out
    import torch
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def run(x: T) -> R:
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)  # this worker thread's own count
        with torch.inference_mode():
            return fn(x)

    res: list = [None] * len(items)
    with ThreadPoolExecutor(workers, thread_name_prefix="ser-task") as pool:
        futures = {pool.submit(run, x): i for i, x in enumerate(items)}
        try:
            for k, f in enumerate(as_completed(futures), 1):
                res[futures[f]] = f.result()
                if on_done is not None:
                    on_done(k)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return res


def used() -> list[int]:
    """The thread counts the adaptive job in this thread has run on so far, in order."""
    state = getattr(_JOB, "state", None)
    return list(state["used"]) if state else []


def mode(threads: int | None = None) -> str:
    """How a job's thread count is chosen: "off" (torch's default), "fixed" (``threads`` or
    ``SER_THREADS``) or "adaptive" (the free cores)."""
    if threads and threads > 0:
        return "fixed"
    if not enabled():
        return "off"
    fixed = os.environ.get("SER_THREADS", "").strip()
    return "fixed" if fixed.isdigit() and int(fixed) > 0 else "adaptive"


def policy() -> dict:
    """What is in force in this process (for tests, the dashboard's About and bug reports)."""
    out = {k: os.environ.get(k) for k in ENV_DEFAULTS}
    out["SER_THREADS"] = os.environ.get("SER_THREADS")
    out["enabled"] = enabled()
    out["mode"] = mode()
    out["usable_cores"] = usable_cores()
    import sys

    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out


def trim_heap() -> None:
    """Give the heap pages a stage freed back to the system. glibc keeps them, per worker
    thread's arena too: after segmentation-3.0's batches (SincNet's first layer is 80 × 160,000
    floats per 10-s chunk) a 60-minute analysis held ~500 MB it no longer used while CAM++ ran.
    Elsewhere (no glibc) nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
