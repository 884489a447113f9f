"""``ser analyze --engine ray``: the batch of :mod:`ser.serve.batch` as a Ray Data pipeline.

    files (driver) → read + decode through the audio door (CPU tasks)
                   → diarize + emotion (an actor pool; each actor loads the model once)
                   → per-file outputs, written atomically by the actor
                   → summary.csv in input order (driver)

The semantics are the local engine's: the same ``analyze_file`` writes the same files, a
file already done with the same options is skipped (before the pipeline, and again inside
an actor, so a retried task finds the work done), a bad file is a row with its error, and a
worker or node that dies has its task retried by Ray (actors restart, tasks retry) while
the atomic rename leaves nothing half-written; temporaries of our files that a dead worker
left are removed when the run ends.

Ray is imported only here (``import ser`` and the app never import it). Without an address a
local Ray is started in-process, bound to 127.0.0.1 and sized to this machine; ``--address
auto`` or ``ray://host:10001`` joins a running cluster, whose nodes must have ``ser`` (this
version) installed and see the output folder (a shared filesystem) and the inputs. Usage
statistics are switched off before Ray starts (``RAY_USAGE_STATS_ENABLED=0``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from ser.serve.batch import (
    SUMMARY_FIELDS,
    BatchOptions,
    _summary_fields,
    analyze_file,
    clean_stale_parts,
    is_done,
    output_stem,
    write_summary,
)
from ser.errors import SERError


def _decode(row: dict) -> dict:
    """Ray task: read one file's bytes and decode them through the audio door (never raises)."""
    from ser.audio.decode import load_audio
    from ser.errors import SERError as _E

    try:
        data = Path(row["path"]).read_bytes()
        a = load_audio(data, name=row.get("file") or row["path"])
        return {**row, "y": a.y, "sr": a.sr, "source_sr": a.source_sr, "channels": a.source_channels,
                "codec": a.codec, "error": ""}
    except (_E, OSError) as exc:
        import numpy as np

        return {**row, "y": np.zeros(0, np.float32), "sr": 0, "source_sr": 0, "channels": 0, "codec": "",
                "error": str(exc) if isinstance(exc, _E) else f"Cannot read {row['path']}: {exc.strerror or exc}"}


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Analyzer:
    """Ray actor: loads the model and diarizer once, then analyses decoded files."""

    def __init__(self, out_dir: str, opts: dict):
        from ser.serve.batch import prepare

        self.out = Path(out_dir)
        self.opts = BatchOptions(**{**opts, "formats": tuple(opts["formats"])})
        if self.opts.device != "cpu":
            import torch

            if not torch.cuda.is_available():  # an actor without a GPU runs on its CPUs
                self.opts = BatchOptions(**{**opts, "formats": tuple(opts["formats"]), "device": "cpu"})
        prepare(self.opts)

    def __call__(self, row: dict) -> dict:
        import numpy as np

        from ser.audio.decode import Audio

        path, stem = row["path"], row["stem"]
        base = {"index": row["index"], "file": row["file"], "node": os.uname().nodename, "pid": os.getpid(),
                "rss_mib": 0.0}
        if is_done(self.out / f"{stem}.json", self.opts):  # a retried task whose first attempt finished
            return {**base, **dict.fromkeys(SUMMARY_FIELDS[1:], ""), "status": "done earlier", "duration_s": 0.0}
        if row["error"]:
            return {**base, **dict.fromkeys(SUMMARY_FIELDS[1:], ""), "status": "error", "error": row["error"],
                    "duration_s": 0.0}
        audio = Audio(np.asarray(row["y"], dtype=np.float32), int(row["sr"]), int(row["source_sr"]),
                      int(row["channels"]), str(row["codec"]), Path(path).name)
        r = analyze_file(path, self.out, self.opts, stem=stem, audio=audio)
        base["rss_mib"] = _peak_rss_mib()
        # every summary field as text (one Arrow type per column across all rows), and the duration
        return {**base, **{k: str(r.get(k, "")) for k in SUMMARY_FIELDS if k != "file"},
                "duration_s": float(r.get("duration_s") or 0.0)}


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _init_ray(address: str | None, *, log: Callable[[str], None] | None):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    host = (address or "").split("://")[-1].rsplit(":", 1)[0]
    if address is None or host in LOOPBACK:
        # a cluster on this machine: keep Ray on loopback. Ray otherwise swaps 127.0.0.1 for this machine's
        # outward address (found by routing a UDP socket towards 8.8.8.8), which a loopback-bound head
        # does not listen on
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address is None and not any(os.environ.get(k) for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")):
        # Ray's head always starts its dashboard process, whose usage-statistics module asks the cloud
        # metadata address (169.254.169.254) which cloud it runs on, even with statistics off. The local
        # Ray we start sends HTTP nowhere else, so point plain-HTTP requests at a closed loopback port
        os.environ["http_proxy"] = "http://127.0.0.1:9"
        os.environ.setdefault("no_proxy", "127.0.0.1,localhost,::1")  # Ray's own loopback HTTP goes direct
    import ray

    if ray.is_initialized():
        return ray, False
    kw = dict(log_to_driver=False, configure_logging=True, logging_level="WARNING")
    if address:
        ray.init(address=address, **kw)
    else:  # a local cluster on this machine only: loopback, no dashboard, sized to the cores
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1", **kw)
    if log:
        res = ray.cluster_resources()
        log(f"ray: {'joined ' + address if address else 'local'}; {len(ray.nodes())} node(s), "
            f"{res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU")
    return ray, True


def run_batch_ray(files: Sequence[Path], out_dir: str | Path, opts: BatchOptions, *, address: str | None = None,
                  actors: int | None = None, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0,
                  roots: dict[Path, Path] | None = None, log: Callable[[str], None] | None = None,
                  show_progress: bool = True) -> dict:
    """Analyse ``files`` on Ray; the same outputs and ``summary.csv`` as :func:`ser.serve.batch.run_batch`."""
    from tqdm import tqdm

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_parts(out)
    roots = roots or {}
    stems = {f: output_stem(f, roots.get(f)) for f in files}
    if len(set(stems.values())) < len(stems):
        raise SERError("Several inputs would write the same output name; analyse them into different --out folders.")
    todo = [f for f in files if not is_done(out / f"{stems[f]}.json", opts)]
    skipped = len(files) - len(todo)
    if log and skipped:
        log(f"{skipped} file(s) already done with these options; skipping them")
    rows_new: dict[str, dict] = {}
    if todo:
        ray, started = _init_ray(address, log=log)
        try:
            rows_new = _run_pipeline(ray, todo, stems, out, opts, actors=actors, cpus_per_actor=cpus_per_actor,
                                     gpus_per_actor=gpus_per_actor, log=log, bar=tqdm(
                                         total=len(todo), desc="analyze (ray)", file=sys.stderr,
                                         disable=None if show_progress else True))
        finally:
            if started:
                ray.shutdown()
        for f in todo:  # what a worker killed mid-write left behind: no task of this run is alive now
            for p in out.glob(f".{stems[f]}.*.part*"):
                p.unlink(missing_ok=True)
    summary = write_summary(out, files, stems, rows_new, opts)
    failed = sum(1 for r in rows_new.values() if r["status"] == "error")
    actors_rss: dict[str, float] = {}
    for r in rows_new.values():
        key = f"{r.get('node')}:{r.get('pid')}"
        actors_rss[key] = max(actors_rss.get(key, 0.0), float(r.get("rss_mib") or 0.0))
    return {"done": len(rows_new) - failed, "skipped": skipped, "failed": failed, "summary": str(summary),
            "actor_peak_rss_mib": actors_rss}


def _run_pipeline(ray, todo, stems, out, opts, *, actors, cpus_per_actor, gpus_per_actor, log, bar) -> dict:
    from dataclasses import asdict

    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    res = ray.cluster_resources()
    if actors is None:
        by_cpu = int(res.get("CPU", 1) // max(cpus_per_actor, 1e-9))
        by_gpu = int(res.get("GPU", 0) // gpus_per_actor) if gpus_per_actor else by_cpu
        actors = max(1, min(by_cpu, by_gpu, len(todo)))
    wopts = {**asdict(opts), "formats": list(opts.formats), "threads": opts.threads or max(1, int(cpus_per_actor))}
    stems_by_file = {str(f): stems[f] for f in todo}
    items = [{"index": i, "file": str(f), "path": str(Path(f).resolve()), "stem": stems[f]} for i, f in enumerate(todo)]
    ds = (ray.data.from_items(items, override_num_blocks=len(items))
          .map(_decode, num_cpus=0)
          .map(Analyzer, fn_constructor_kwargs={"out_dir": str(out), "opts": wopts},
               compute=ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor, num_gpus=gpus_per_actor))
    if log:
        log(f"ray: {len(todo)} file(s) on {actors} actor(s) x {cpus_per_actor:g} CPU"
            + (f" + {gpus_per_actor:g} GPU" if gpus_per_actor else ""))
    rows: dict[str, dict] = {}
    t0, audio_s = time.perf_counter(), 0.0
    for r in ds.iter_rows():
        row = {k: r[k] for k in r}
        if row["status"] == "done earlier":  # a retried task: this run's first attempt wrote the result
            d = json.loads((out / f"{stems_by_file[row['file']]}.json").read_text(encoding="utf-8"))
            row = {**row, **_summary_fields(d), "outputs": "(written before a retry)", "error": "",
                   "duration_s": float(d.get("duration_s") or 0.0)}
        rows[row["file"]] = row
        audio_s += float(row.get("duration_s") or 0.0)
        bar.update(1)
        elapsed = time.perf_counter() - t0
        left = (len(todo) - bar.n) * elapsed / max(1, bar.n)
        bar.set_postfix_str(f"{audio_s / 3600:.2f} h audio, ETA {left:.0f} s")
        if log and row["status"] == "error":
            log(f"{row['file']}: {row['error']}")
    return rows  # keyed by the input as given; files a retried task found done are read back from their JSON





class Predictor:
    """Ray actor: loads the emotion model once and classifies decoded clips."""

    def __init__(self, model: str, device: str):
        from ser.emotion.model import load_model

        try:
            self.model = load_model(model, device=device)
        except SERError:
            if device == "cpu":
                raise
            self.model = load_model(model, device="cpu")  # an actor without a GPU

    def __call__(self, row: dict) -> dict:
        import json

        import numpy as np

        if row["error"]:
            return {"index": row["index"], "json": json.dumps({"file": row["file"], "error": row["error"]})}
        try:
            r = {"file": row["file"], **self.model.predict(np.asarray(row["y"], np.float32), int(row["sr"]),
                                                          name=row["file"]), "model": self.model.id}
        except SERError as exc:
            r = {"file": row["file"], "error": str(exc)}
        return {"index": row["index"], "json": json.dumps(r)}


def predict_ray(files: Sequence[str], *, model: str = "default", device: str = "auto", address: str | None = None,
                actors: int | None = None, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0,
                log: Callable[[str], None] | None = None) -> list[dict]:
    """``ser predict --engine ray``: the same JSON object per file as the local engine, in input order."""
    import json

    from ser.emotion.model import load_model

    load_model(model, device="cpu")  # a missing or broken model fails here, before the cluster works
    ray, started = _init_ray(address, log=log)  # first: it sets Ray's environment before Ray is imported
    try:
        from ray.data import ActorPoolStrategy, DataContext

        DataContext.get_current().enable_progress_bars = False
        res = ray.cluster_resources()
        if actors is None:
            actors = max(1, min(len(files), int(res.get("CPU", 1) // max(cpus_per_actor, 1e-9))))
        items = [{"index": i, "file": f, "path": str(Path(f).resolve())} for i, f in enumerate(files)]
        ds = (ray.data.from_items(items, override_num_blocks=min(len(items), 4 * actors))
              .map(_decode, num_cpus=0)
              .map(Predictor, fn_constructor_kwargs={"model": model, "device": device},
                   compute=ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor, num_gpus=gpus_per_actor))
        rows = sorted(ds.iter_rows(), key=lambda r: r["index"])
    finally:
        if started:
            ray.shutdown()
    return [json.loads(r["json"]) for r in rows]
__all__ = ["Analyzer", "Predictor", "predict_ray", "run_batch_ray"]
