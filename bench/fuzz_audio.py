"""The long fuzz run of the audio door: ``ser.audio.fuzz`` with many cases and a seed of its own.

    python bench/fuzz_audio.py [--cases 20000] [--seed 7] [--workers 2]

Every case runs in a worker process (a crash or hang is counted, the run goes on). Writes
the counts, the largest per-case peak RSS and time, the kinds of refusal and the first
findings to bench/results/fuzz_audio.json; exits 1 if any case crashed, hung, raised
something other than a SERError, printed a Python traceback or warning, or went over the
memory bound. A finding is reproduced with ``ser.audio.fuzz.case(seed, index, seed_files())``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout-s", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_audio.json")
    args = ap.parse_args()
    from ser.audio.fuzz import run, seed_files

    report = run(n_cases=args.cases, seed=args.seed, workers=args.workers, timeout_s=args.timeout_s,
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    doc = {"command": "python bench/fuzz_audio.py " + " ".join(sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu_count": os.cpu_count(),
           "seed_files": sorted(seed_files()), **report.to_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("cases", "counts", "failures", "peak_rss_mb_max_per_case",
                                          "case_seconds_max", "wall_s")}, indent=1))
    print(f"wrote {args.out}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
