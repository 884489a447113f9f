"""Exports of an :class:`~ser.analysis.Analysis`: JSON, CSV, RTTM, Praat TextGrid,
ELAN EAF and an Audacity label track. Each writer returns the path it wrote.

One set of turns is behind every format: every speaker turn of the analysis, in time order,
appears once in each of them — also a turn too short to score, whose emotion is written as
``unscored`` (no probabilities). Overlapping turns of two speakers stay two turns.

- JSON: ``Analysis.to_dict()`` (schema ``ser.analysis/2``; unscored turns are listed in
  ``provenance.unscored_turns``).
- CSV: one row per turn (``kind`` = ``turn``; an unscored one has emotion ``unscored`` and
  empty probabilities), then one per window (``kind`` = ``window``), a column per label.
- RTTM: the speaker turns, written by pyannote.core.
- TextGrid: per speaker, a tier named after the speaker (each turn an interval labelled with
  the speaker) and a tier ``<speaker> emotion`` (the same intervals, labelled with the
  emotion, ``?`` when uncertain, or ``unscored``). A Praat tier cannot hold overlapping
  intervals; a speaker's own turns never overlap, so overlapped speech is two tiers.
- EAF: the same tiers for ELAN (the emotion annotation also gives its probability), with the
  recording linked as the media file (a path relative to the EAF) when it is known.
- Audacity: tab-separated ``start end speaker: emotion`` lines, one per turn.

With a transcript (``analyze(..., transcribe=True)``), also:

- JSON: ``words`` (each with its speaker) and ``utterances`` (each with its emotion);
- CSV: a ``text`` column (a turn's words; empty without a transcript), then one row per
  utterance (``kind`` = ``utterance``, with its turn's emotion);
- TextGrid and EAF: per speaker, a tier ``<speaker> words`` and a tier ``<speaker> text``
  (utterances), beside the speaker and emotion tiers;
- SRT and WebVTT (:mod:`ser.transcription.subtitles`): one cue per utterance,
  ``[speaker · emotion p%] text``. Asked for without a transcript, they are refused clearly.

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
from pathlib import Path
from typing import Callable

from ser.analysis.escape import clean_name, csv_cell
from ser.analysis.result import Analysis, EmotionSegment, to_annotation

FORMATS = ("json", "csv", "rttm", "textgrid", "eaf", "audacity")
TRANSCRIPT_FORMATS = ("srt", "vtt")  # written by default when the analysis has a transcript
EXTENSIONS = {"json": "json", "csv": "csv", "rttm": "rttm", "textgrid": "TextGrid", "eaf": "eaf", "audacity": "txt",
              "srt": "srt", "vtt": "vtt"}


def _label(s: EmotionSegment) -> str:
    return f"{s.emotion}?" if s.uncertain else s.emotion


def write_json(a: Analysis, path: Path) -> Path:
    path.write_text(json.dumps(a.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


UNSCORED = "unscored"


def _turn_rows(a: Analysis) -> list[tuple[float, float, str, EmotionSegment | None]]:
    """Every turn in time order with its emotion segment (None: too short to score)."""
    by_turn = {(s.start_s, s.end_s, s.speaker): s for s in a.segments}
    turns = sorted(a.turns, key=lambda t: (t.start_s, t.end_s, t.speaker))
    return [(t.start_s, t.end_s, t.speaker, by_turn.get((t.start_s, t.end_s, t.speaker))) for t in turns]


def turn_text(a: Analysis, start: float, end: float, speaker: str) -> str:
    """The transcript's words of one turn: the speaker's words whose middle falls in it."""
    return " ".join(w.text for w in a.words if w.speaker == speaker and start <= (w.start_s + w.end_s) / 2 <= end)


def write_csv(a: Analysis, path: Path) -> Path:
    def probs(p: dict | None) -> list[str]:
        return [f"{p[x]:.4f}" for x in a.labels] if p else ["" for _ in a.labels]

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kind", "start_s", "end_s", "speaker", "emotion", "uncertain", *(f"p_{x}" for x in a.labels),
                    "text"])
        for start, end, speaker, s in _turn_rows(a):
            text = csv_cell(turn_text(a, start, end, speaker))
            if s is None:
                w.writerow(["turn", f"{start:.3f}", f"{end:.3f}", csv_cell(speaker), UNSCORED, "", *probs(None), text])
            else:
                w.writerow(["turn", f"{start:.3f}", f"{end:.3f}", csv_cell(speaker), s.emotion, int(s.uncertain),
                            *probs(s.probabilities), text])
        for s in a.windows:
            w.writerow([s.kind, f"{s.start_s:.3f}", f"{s.end_s:.3f}", csv_cell(s.speaker), s.emotion, int(s.uncertain),
                        *probs(s.probabilities), ""])
        for u in a.utterances:
            w.writerow(["utterance", f"{u.start_s:.3f}", f"{u.end_s:.3f}", csv_cell(u.speaker or ""),
                        u.emotion or UNSCORED, int(u.uncertain) if u.emotion else "", *probs(u.probabilities),
                        csv_cell(u.text)])
    return path


def write_rttm(a: Analysis, path: Path) -> Path:
    from dataclasses import replace

    turns = [replace(t, speaker=clean_name(t.speaker, spaces="_") or "_") for t in a.turns]
    with open(path, "w", encoding="utf-8") as f:
        to_annotation(turns, uri=clean_name(a.name, spaces="_") or "audio").write_rttm(f)
    return path


def _speaker_tiers(a: Analysis) -> dict[str, list[tuple[float, float, EmotionSegment | None]]]:
    """Per speaker (in order of first speech), their turns as non-overlapping intervals."""
    out: dict[str, list[tuple[float, float, EmotionSegment | None]]] = {}
    for start, end, speaker, s in _turn_rows(a):
        rows = out.setdefault(speaker, [])
        if rows and start < rows[-1][1]:  # a speaker's own turns touching: cut at the earlier one's end
            start = rows[-1][1]
        if end - start > 1e-6:
            rows.append((start, end, s))
    return out


def _emotion_text(s: EmotionSegment | None, *, with_p: bool = False) -> str:
    if s is None:
        return UNSCORED
    return f"{_label(s)} ({s.probabilities[s.emotion]:.2f})" if with_p else _label(s)


def _no_overlap(items: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Intervals of one speaker in time order, each starting no earlier than the previous ends
    (a tier cannot hold overlapping intervals); empty ones dropped."""
    out: list[tuple[float, float, str]] = []
    for lo, hi, text in sorted(items):
        if out and lo < out[-1][1]:
            lo = out[-1][1]
        if hi - lo > 1e-6:
            out.append((lo, hi, text))
    return out


def _text_tiers(a: Analysis, speaker: str) -> dict[str, list[tuple[float, float, str]]]:
    """A speaker's ``words`` and ``text`` (utterance) intervals, when there is a transcript."""
    if not a.words:
        return {}
    return {"words": _no_overlap([(w.start_s, w.end_s, clean_name(w.text)) for w in a.words if w.speaker == speaker]),
            "text": _no_overlap([(u.start_s, u.end_s, clean_name(u.text)) for u in a.utterances
                                 if u.speaker == speaker])}


def write_textgrid(a: Analysis, path: Path) -> Path:
    from praatio import textgrid

    tg = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=a.duration_s)
    for speaker, rows in _speaker_tiers(a).items():
        name = clean_name(speaker)
        tg.addTier(textgrid.IntervalTier(name, [(lo, hi, name) for lo, hi, _ in rows], 0.0, a.duration_s))
        tg.addTier(textgrid.IntervalTier(f"{name} emotion", [(lo, hi, _emotion_text(s)) for lo, hi, s in rows],
                                         0.0, a.duration_s))
        for kind, items in _text_tiers(a, speaker).items():
            tg.addTier(textgrid.IntervalTier(f"{name} {kind}", items, 0.0, a.duration_s))
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return path


def write_eaf(a: Analysis, path: Path, *, media: str | None = None) -> Path:
    """``media``: the recording, as a path relative to the EAF's folder (or absolute)."""
    from pympi.Elan import Eaf

    eaf = Eaf(author="ser")
    eaf.remove_tier("default")
    if media:
        eaf.add_linked_file(media, relpath=media if not Path(media).is_absolute() else None,
                            mimetype=_MIME.get(Path(media).suffix.lower().lstrip("."), "audio/x-wav"))
    for speaker, rows in _speaker_tiers(a).items():
        name = clean_name(speaker)
        eaf.add_tier(name)
        eaf.add_tier(f"{name} emotion")
        for lo, hi, s in rows:
            t0, t1 = int(round(lo * 1000)), int(round(hi * 1000))
            eaf.add_annotation(name, t0, t1, name)
            eaf.add_annotation(f"{name} emotion", t0, t1, _emotion_text(s, with_p=True))
        for kind, items in _text_tiers(a, speaker).items():
            eaf.add_tier(f"{name} {kind}")
            for lo, hi, text in items:
                t0, t1 = int(round(lo * 1000)), int(round(hi * 1000))
                if t1 > t0:
                    eaf.add_annotation(f"{name} {kind}", t0, t1, text)
    eaf.to_file(str(path))
    return path


_MIME = {"wav": "audio/x-wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "m4a": "audio/mp4"}


def write_audacity(a: Analysis, path: Path) -> Path:
    lines = [f"{start:.6f}\t{end:.6f}\t{clean_name(speaker)}: {_emotion_text(s)}"
             for start, end, speaker, s in _turn_rows(a)]
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return path


def write_srt(a: Analysis, path: Path) -> Path:
    from ser.transcription.subtitles import srt

    path.write_text(srt(a), encoding="utf-8")
    return path


def write_vtt(a: Analysis, path: Path) -> Path:
    from ser.transcription.subtitles import vtt

    path.write_text(vtt(a), encoding="utf-8")
    return path


WRITERS: dict[str, Callable[[Analysis, Path], Path]] = {
    "json": write_json, "csv": write_csv, "rttm": write_rttm, "textgrid": write_textgrid, "eaf": write_eaf,
    "audacity": write_audacity, "srt": write_srt, "vtt": write_vtt,
}


def default_formats(a: Analysis) -> tuple[str, ...]:
    """Every format that has something to say: the subtitles only with a transcript."""
    return FORMATS + (TRANSCRIPT_FORMATS if a.transcribed else ())


def check_formats(a: Analysis | None, formats: list[str] | tuple[str, ...]) -> None:
    """A clear error for an unknown format, or subtitles of an analysis without a transcript."""
    from ser.errors import ConfigError

    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ConfigError(f"Unknown export format(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(FORMATS + TRANSCRIPT_FORMATS)}.")
    subs = [f for f in formats if f in TRANSCRIPT_FORMATS]
    if a is not None and subs and not a.transcribed:
        raise ConfigError(f"{', '.join(subs).upper()} need a transcript: analyse with transcription on "
                          "(`ser analyze --transcribe`, or the Analyze page's Transcript switch).")


def export(a: Analysis, out_dir: str | Path, formats: list[str] | tuple[str, ...] | None = None,
           *, stem: str | None = None, media: str | None = None) -> dict[str, Path]:
    """Write ``out_dir/<stem>.<ext>`` for each format (default: :func:`default_formats`);
    returns {format: path}. ``media``: the recording, relative to ``out_dir`` (linked from the EAF)."""
    formats = default_formats(a) if formats is None else formats
    check_formats(a, formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or a.name or "analysis"
    return {f: (write_eaf(a, out / f"{stem}.eaf", media=media) if f == "eaf" else
                WRITERS[f](a, out / f"{stem}.{EXTENSIONS[f]}")) for f in formats}


def export_bytes(a: Analysis, formats: list[str] | tuple[str, ...] | None = None, *,
                 stem: str | None = None, media: str | None = None) -> dict[str, tuple[str, bytes]]:
    """Each format in memory, for downloads: {format: (file name, bytes)}. ``media``: the
    recording's file name, linked from the EAF as lying beside it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return {f: (p.name, p.read_bytes()) for f, p in export(a, tmp, formats, stem=stem, media=media).items()}


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
