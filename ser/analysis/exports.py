"""Exports of an :class:`~ser.analysis.Analysis`: JSON, CSV, RTTM, Praat TextGrid,
ELAN EAF and an Audacity label track. Each writer returns the path it wrote.

- JSON: ``Analysis.to_dict()`` (schema ``ser.analysis/1``).
- CSV: one row per segment (turn aggregates, then windows) with a column per label.
- RTTM: speaker turns, written by pyannote.core.
- TextGrid: a ``speaker`` tier and an ``emotion`` tier over the same intervals;
  where turns overlap, the interval lists every active speaker (``A+B``) and
  emotion (``A:angry+B:sad``), since a Praat tier cannot hold overlapping intervals.
- EAF: one tier per speaker, each turn annotated with its emotion and probability.
- Audacity: tab-separated ``start end label`` lines, one per turn.

Names in files (the recording's, the speakers') are user-supplied, so every writer cleans
them the same documented way (:func:`clean_name`): control characters (C0, DEL, C1 and the
Unicode line and paragraph separators) become spaces, so no name can start a new line or
record; RTTM, whose fields are separated by spaces, also gets ``_`` for every whitespace. CSV
cells that are text and start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
get a leading ``'`` (:func:`csv_cell`, OWASP's rule against formula injection), so a
spreadsheet shows them instead of running them.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Callable

from ser.analysis.result import Analysis, EmotionSegment, to_annotation

FORMATS = ("json", "csv", "rttm", "textgrid", "eaf", "audacity")
EXTENSIONS = {"json": "json", "csv": "csv", "rttm": "rttm", "textgrid": "TextGrid", "eaf": "eaf", "audacity": "txt"}


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_name(name: object, *, spaces: str | None = None) -> str:
    """A user-supplied name fit for a file format: control characters (line breaks included)
    become spaces; with ``spaces``, every whitespace run becomes that string (RTTM)."""
    s = _CONTROL.sub(" ", str(name))
    return re.sub(r"\s+", spaces, s.strip()) if spaces is not None else s


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting with ``=``, ``+``, ``-``, ``@``, tab or
    CR gets a leading ``'`` (numbers, and text that reads as a number, stay as they are)."""
    if not isinstance(value, str) or not value:
        return value
    v = clean_name(value)
    if value[0] in "=+-@\t\r":
        try:
            float(value)
            return value
        except ValueError:
            return "'" + v
    return v


def _label(s: EmotionSegment) -> str:
    return f"{s.emotion}?" if s.uncertain else s.emotion


def write_json(a: Analysis, path: Path) -> Path:
    path.write_text(json.dumps(a.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def write_csv(a: Analysis, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kind", "start_s", "end_s", "speaker", "emotion", "uncertain", *(f"p_{x}" for x in a.labels)])
        for s in [*a.segments, *a.windows]:
            w.writerow([s.kind, f"{s.start_s:.3f}", f"{s.end_s:.3f}", csv_cell(s.speaker), s.emotion, int(s.uncertain),
                        *(f"{s.probabilities[x]:.4f}" for x in a.labels)])
    return path


def write_rttm(a: Analysis, path: Path) -> Path:
    from dataclasses import replace

    turns = [replace(t, speaker=clean_name(t.speaker, spaces="_") or "_") for t in a.turns]
    with open(path, "w", encoding="utf-8") as f:
        to_annotation(turns, uri=clean_name(a.name, spaces="_") or "audio").write_rttm(f)
    return path


def _flatten(a: Analysis) -> list[tuple[float, float, list[EmotionSegment]]]:
    """Non-overlapping intervals with the turn segments active in each (empty = no speech)."""
    bounds = sorted({0.0, a.duration_s, *(b for s in a.segments for b in (s.start_s, s.end_s))})
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        if hi - lo <= 1e-6:
            continue
        active = [s for s in a.segments if s.start_s < hi - 1e-6 and s.end_s > lo + 1e-6]
        out.append((lo, hi, sorted(active, key=lambda s: s.speaker)))
    return out


def write_textgrid(a: Analysis, path: Path) -> Path:
    from praatio import textgrid

    speaker, emotion = [], []
    for lo, hi, active in _flatten(a):
        if not active:
            continue
        speaker.append((lo, hi, "+".join(clean_name(s.speaker) for s in active)))
        emotion.append((lo, hi, _label(active[0]) if len(active) == 1
                        else "+".join(f"{clean_name(s.speaker)}:{_label(s)}" for s in active)))
    tg = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=a.duration_s)
    tg.addTier(textgrid.IntervalTier("speaker", speaker, 0.0, a.duration_s))
    tg.addTier(textgrid.IntervalTier("emotion", emotion, 0.0, a.duration_s))
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return path


def write_eaf(a: Analysis, path: Path, *, media: str | None = None) -> Path:
    from pympi.Elan import Eaf

    eaf = Eaf(author="ser")
    eaf.remove_tier("default")
    if media:
        eaf.add_linked_file(media, mimetype="audio/x-wav")
    for spk in a.speakers:
        eaf.add_tier(clean_name(spk))
    for s in a.segments:
        p = s.probabilities[s.emotion]
        eaf.add_annotation(clean_name(s.speaker), int(round(s.start_s * 1000)), int(round(s.end_s * 1000)),
                           f"{_label(s)} ({p:.2f})")
    eaf.to_file(str(path))
    return path


def write_audacity(a: Analysis, path: Path) -> Path:
    lines = [f"{s.start_s:.6f}\t{s.end_s:.6f}\t{clean_name(s.speaker)}: {_label(s)}" for s in a.segments]
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return path


WRITERS: dict[str, Callable[[Analysis, Path], Path]] = {
    "json": write_json, "csv": write_csv, "rttm": write_rttm, "textgrid": write_textgrid, "eaf": write_eaf,
    "audacity": write_audacity,
}


def export(a: Analysis, out_dir: str | Path, formats: list[str] | tuple[str, ...] = FORMATS,
           *, stem: str | None = None) -> dict[str, Path]:
    """Write ``out_dir/<stem>.<ext>`` for each format; returns {format: path}."""
    from ser.errors import ConfigError

    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ConfigError(f"Unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or a.name or "analysis"
    return {f: WRITERS[f](a, out / f"{stem}.{EXTENSIONS[f]}") for f in formats}


def export_bytes(a: Analysis, formats: list[str] | tuple[str, ...] = FORMATS, *,
                 stem: str | None = None) -> dict[str, tuple[str, bytes]]:
    """Each format in memory, for downloads: {format: (file name, bytes)}."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return {f: (p.name, p.read_bytes()) for f, p in export(a, tmp, formats, stem=stem).items()}


def rows_csv(rows: list[dict]) -> str:
    """Flat rows (dicts with the same keys) as CSV text: the Live page's clip list and timeline."""
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def clips_zip(clips: list[tuple[str, bytes]], table: str, table_name: str = "clips.csv") -> bytes:
    """A ZIP of named audio clips plus a results table (CSV text)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(table_name, table)
        for name, data in clips:
            z.writestr(name, data)
    return buf.getvalue()
