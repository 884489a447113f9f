"""Tune the builtin diarizer's overlap and counting stages on the meeting-like set; check elsewhere.

    python bench/diarization_overlap_tune.py cache [--sets meeting,real,sim,short,check]   # stages 1-2, once
    python bench/diarization_overlap_tune.py grid  [--grid bench/diarization_overlap_grid.json] [--out bench/results/diarization_overlap_tune.json]

Stages 1-2 (segmentation-3.0 and CAM++; ``BuiltinSettings``' voice activity and window
settings) are run once per recording and kept in ``--cache`` (``.npz`` files and the
reference turns as JSON; our own arrays, no pickles). ``grid`` then re-runs only stages 3-4
(``ser.diarization.assign``) for each setting and scores it with ``diarization_eval.score``
(pyannote.metrics, collar 0.25 s, overlap scored, automatic count).

Protocol: settings are chosen on ``meeting`` (40 simulated meetings, seeds 5000-5039); the
earlier simulated sets (``sim``, ``short``, ``check``) are regression checks (no more than
0.02 worse) and the six real recordings are reported for every row but never chosen on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diarization_eval import (DEFAULT_DATA, ROOT, SHORT, Item, load_meetings, load_set, load_sim,  # noqa: E402
                              parse_overrides, score)

SETS = {"meeting": lambda: load_meetings(40, 5000), "real": lambda: load_set(DEFAULT_DATA),
        "sim": lambda: load_sim(40, 0), "short": lambda: load_sim(40, 3000, **SHORT),
        "check": lambda: load_sim(20, 1000)}


def _save(path: Path, emb, it: Item) -> None:
    arrays = {"regions": emb.regions, "windows": emb.windows, "vectors": emb.vectors,
              "count": emb.count if emb.count is not None else np.zeros(0, np.float32),
              "starts": emb.chunks.starts if emb.chunks is not None else np.zeros(0, np.int64),
              "active": emb.chunks.active if emb.chunks is not None else np.zeros((0, 0, 3), bool)}
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    meta = {"n_frames": emb.n_frames, "duration_s": emb.duration_s, "hop_s": emb.hop_s,
            "ref": [(s.start, s.end, str(lab)) for s, _, lab in it.ref.itertracks(yield_label=True)],
            "uem": [(s.start, s.end) for s in it.uem]}
    path.with_suffix(".json").write_text(json.dumps(meta))


def load_cached(cache: Path, name: str):
    """``(items, embeddings)`` of one cached set."""
    from pyannote.core import Annotation, Segment, Timeline
    from ser.diarization.base import Embeddings
    from ser.diarization.segmentation import ChunkActivity
    items, embs = [], {}
    for meta_path in sorted((cache / name).glob("*.json")):
        uri = meta_path.stem
        meta = json.loads(meta_path.read_text())
        z = np.load(meta_path.with_suffix(".npz"))
        ref = Annotation(uri=uri)
        for i, (a, b, lab) in enumerate(meta["ref"]):
            ref[Segment(a, b), i] = lab
        items.append(Item(uri, None, ref, Timeline([Segment(a, b) for a, b in meta["uem"]], uri=uri)))
        chunks = ChunkActivity(z["starts"], z["active"]) if len(z["starts"]) else None
        embs[uri] = Embeddings(z["regions"], z["windows"], z["vectors"], meta["n_frames"], meta["duration_s"],
                               z["count"] if len(z["count"]) else None, meta["hop_s"], chunks=chunks)
    return items, embs


def cache_sets(names: list[str], cache: Path, overrides: dict) -> None:
    from ser.diarization.base import BuiltinSettings
    from ser.diarization.embed import embed
    settings = replace(BuiltinSettings(), **overrides)
    for name in names:
        (cache / name).mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        items = SETS[name]()
        for it in items:
            _save(cache / name / it.uri, embed(it.y, 16000, settings), it)
        print(f"{name}: {len(items)} recordings cached in {time.perf_counter() - t0:.0f} s", flush=True)


def evaluate(items, embs, settings, **counts) -> dict:
    from ser.diarization.assign import assign
    r = score(items, {it.uri: assign(embs[it.uri], settings, **counts) for it in items}, 0.25)
    return {k: v for k, v in r.items() if k != "files"} | {"files": {
        u: {k: f[k] for k in ("der", "missed_single", "missed_overlap", "false_alarm", "confusion", "speakers",
                              "ref_speakers")} for u, f in r["files"].items()}}


GRID = ROOT / "bench" / "diarization_overlap_grid.json"  # the rows behind the chosen defaults (issue 28)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["cache", "grid"])
    ap.add_argument("--sets", default="meeting,real,sim,short,check")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/diar_cache"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="cache: BuiltinSettings overrides for stages 1-2 (e.g. segmentation_step_s=2.5)")
    ap.add_argument("--grid", type=Path, default=GRID, help="a JSON list of BuiltinSettings overrides, one row each "
                    "({} = the defaults; the first row of the default grid is the diarizer before issue 28)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization_overlap_tune.json")
    args = ap.parse_args()
    names = args.sets.split(",")
    if args.what == "cache":
        cache_sets(names, args.cache, parse_overrides(args.set))
        return
    from ser.diarization.base import BuiltinSettings
    rows = json.loads(args.grid.read_text())
    known = {f.name for f in fields(BuiltinSettings)}
    data = {n: load_cached(args.cache, n) for n in names}
    out = []
    for row in rows:
        bad = set(row) - known
        if bad:
            raise SystemExit(f"unknown settings: {sorted(bad)}")
        s = replace(BuiltinSettings(), **row)
        res = {"settings": row, "sets": {}}
        for n, (items, embs) in data.items():
            r = evaluate(items, embs, s)
            res["sets"][n] = r
        line = "  ".join(f"{n} {r['der']:.3f} (ms {r['missed_single']:.3f} mo {r['missed_overlap']:.3f} "
                         f"fa {r['false_alarm']:.3f} cf {r['confusion']:.3f} P/R "
                         f"{r['overlap_precision'] or 0:.2f}/{r['overlap_recall'] or 0:.2f} ±1 {r['count_within_1']:.0%})"
                         for n, r in res["sets"].items())
        print(json.dumps(row), line, flush=True)
        if out and row:  # per-file figures only for the first row (before) and the defaults ({})
            for r in res["sets"].values():
                r.pop("files")
        out.append(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"protocol": __doc__.split("Protocol: ")[1].strip(),
                                    "defaults": {k: v for k, v in asdict(BuiltinSettings()).items()},
                                    "rows": out}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
