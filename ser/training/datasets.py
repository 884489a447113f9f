"""Corpus readers: each turns a corpus folder into a list of :class:`Utterance`.

Labels are canonical emotions (see :mod:`ser.emotion.labels`); files whose emotion has no
canonical counterpart (EmoDB's boredom, Dusha's "other") are skipped and counted.
Speakers are strings prefixed by the corpus so that corpora can be pooled.

Supported layouts (by each corpus's documented file-name convention):

- RAVDESS: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (official 48 kHz WAV) or ``.flac``
  (``../shared/data/ravdess16k``). Emotion EE, actor AA (odd male, even female).
- CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.wav``; gender from ``VideoDemographics.csv``
  when it lies in the corpus folder.
- TESS: ``OAF_back_angry.wav`` (speakers OAF/YAF, both female; "ps" = surprised).
- SAVEE: ``DC_a01.wav`` or ``DC/a01.wav`` (speakers DC, JE, JK, KL, all male).
- ASED: ``01Neutral/n1-SS-RR-GG-PP.flac`` (emotion letter, sentence, repetition, gender,
  speaker 01–65).
- EmoDB: ``03a01Fa.wav`` (speaker 03, text a01, emotion letter F, version a).
- Dusha: a manifest (``.jsonl`` or ``.tsv``) with ``audio_path`` and an emotion field
  (``emotion``, ``speaker_emo`` or ``annotator_emo``) and, where present, a speaker
  field (``speaker_id``, ``source_id`` or ``annotator_id``).
- Folder + CSV: a CSV with columns ``path,label[,speaker][,gender]``; paths relative
  to the CSV's folder.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ser.errors import DataError
from ser.emotion.labels import EMOTIONS

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".webm")


@dataclass(frozen=True)
class Utterance:
    path: Path
    label: str  # canonical emotion
    speaker: str  # "<corpus>:<id>"
    gender: str | None = None  # "female" | "male" | None when unknown
    corpus: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _audio_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the corpus's root folder.")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def _require(items: list[Utterance], root: Path, corpus: str, skipped: Counter) -> list[Utterance]:
    if not items:
        hint = f" ({sum(skipped.values())} files did not match the naming convention)" if skipped else ""
        raise DataError(f"No {corpus} files found under {root}{hint}; check the folder and the corpus name.")
    return items


# --- RAVDESS -------------------------------------------------------------------
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def read_ravdess(root: str | Path, *, actors: Iterable[int] | None = None) -> list[Utterance]:
    """RAVDESS speech (vocal channel 01); ``actors`` restricts to those actor numbers."""
    root, keep = Path(root), set(actors) if actors is not None else None
    items, skipped = [], Counter()
    for p in _audio_files(root):
        m = _RAVDESS_RE.match(p.stem)
        if not m or m.group(2) != "01" or m.group(3) not in RAVDESS_EMOTIONS:
            skipped["name"] += 1
            continue
        actor = int(m.group(7))
        if keep is not None and actor not in keep:
            continue
        items.append(Utterance(p, RAVDESS_EMOTIONS[m.group(3)], f"ravdess:{actor:02d}",
                               "male" if actor % 2 else "female", "ravdess"))
    return _require(items, root, "RAVDESS", skipped)


# --- CREMA-D -------------------------------------------------------------------
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
                   "NEU": "neutral", "SAD": "sad"}
_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def read_crema_d(root: str | Path) -> list[Utterance]:
    root = Path(root)
    genders: dict[str, str] = {}
    demo = next(iter(root.rglob("VideoDemographics.csv")), None)
    if demo is not None:
        with open(demo, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                sex = (row.get("Sex") or "").strip().lower()
                if sex in ("male", "female"):
                    genders[row["ActorID"].strip()] = sex
    items, skipped = [], Counter()
    for p in _audio_files(root):
        m = _CREMAD_RE.match(p.stem)
        if not m or m.group(3) not in CREMAD_EMOTIONS:
            skipped["name"] += 1
            continue
        items.append(Utterance(p, CREMAD_EMOTIONS[m.group(3)], f"crema-d:{m.group(1)}",
                               genders.get(m.group(1)), "crema-d"))
    return _require(items, root, "CREMA-D", skipped)


# --- TESS ----------------------------------------------------------------------
TESS_EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
                 "neutral": "neutral", "ps": "surprised", "pleasant_surprise": "surprised",
                 "pleasant_surprised": "surprised", "sad": "sad", "surprise": "surprised"}


def read_tess(root: str | Path) -> list[Utterance]:
    root = Path(root)
    items, skipped = [], Counter()
    for p in _audio_files(root):
        parts = p.stem.split("_")
        speaker = parts[0].upper()
        emotion = TESS_EMOTIONS.get("_".join(parts[2:]).lower()) if len(parts) >= 3 else None
        if speaker not in ("OAF", "YAF") or emotion is None:
            skipped["name"] += 1
            continue
        items.append(Utterance(p, emotion, f"tess:{speaker}", "female", "tess"))
    return _require(items, root, "TESS", skipped)


# --- SAVEE ---------------------------------------------------------------------
SAVEE_EMOTIONS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
                  "sa": "sad", "su": "surprised"}
_SAVEE_RE = re.compile(r"^(?:(DC|JE|JK|KL)_)?(sa|su|a|d|f|h|n)(\d\d)$")


def read_savee(root: str | Path) -> list[Utterance]:
    root = Path(root)
    items, skipped = [], Counter()
    for p in _audio_files(root):
        m = _SAVEE_RE.match(p.stem)
        speaker = (m.group(1) if m else None) or (p.parent.name if p.parent.name in ("DC", "JE", "JK", "KL") else None)
        if not m or speaker is None:
            skipped["name"] += 1
            continue
        items.append(Utterance(p, SAVEE_EMOTIONS[m.group(2)], f"savee:{speaker}", "male", "savee"))
    return _require(items, root, "SAVEE", skipped)


# --- EmoDB ---------------------------------------------------------------------
EMODB_EMOTIONS = {"W": "angry", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad",
                  "N": "neutral"}  # L (Langeweile, boredom) has no canonical counterpart
EMODB_MALE = {"03", "10", "11", "12", "15"}
_EMODB_RE = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")


def read_emodb(root: str | Path) -> list[Utterance]:
    root = Path(root)
    items, skipped = [], Counter()
    for p in _audio_files(root):
        m = _EMODB_RE.match(p.stem)
        if not m:
            skipped["name"] += 1
            continue
        if m.group(3) not in EMODB_EMOTIONS:
            skipped["boredom"] += 1
            continue
        spk = m.group(1)
        items.append(Utterance(p, EMODB_EMOTIONS[m.group(3)], f"emodb:{spk}",
                               "male" if spk in EMODB_MALE else "female", "emodb"))
    return _require(items, root, "EmoDB", skipped)


# --- ASED ----------------------------------------------------------------------
ASED_EMOTIONS = {"n": "neutral", "f": "fearful", "h": "happy", "s": "sad", "a": "angry"}
_ASED_RE = re.compile(r"^([nfhsa])([1-5])-(\d\d)-(\d\d)-(0[12])-(\d\d)$", re.IGNORECASE)


def read_ased(root: str | Path) -> list[Utterance]:
    """ASED v1 (Retta et al. 2022): ``01Neutral/n1-SS-RR-GG-PP.flac`` (or ``.wav``).

    The emotion letter gives the label (case-insensitive: one file is ``S4-...``); PP is the
    speaker. The public copy's quirks are handled: a speaker's gender is the majority of their
    files' gender codes (five files disagree), and byte-identical files (four pairs of
    repetitions) are kept once."""
    import hashlib

    root = Path(root)
    rows, skipped = [], Counter()
    for p in _audio_files(root):
        m = _ASED_RE.match(p.stem)
        if not m:
            skipped["name"] += 1
            continue
        rows.append((p, ASED_EMOTIONS[m.group(1).lower()], m.group(6), "female" if m.group(5) == "01" else "male"))
    votes: dict[str, Counter] = {}
    for _, _, spk, g in rows:
        votes.setdefault(spk, Counter())[g] += 1
    items, seen = [], set()
    for p, emotion, spk, _ in rows:
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(digest)
        items.append(Utterance(p, emotion, f"ased:{spk}", votes[spk].most_common(1)[0][0], "ased"))
    return _require(items, root, "ASED", skipped)


# --- Dusha ---------------------------------------------------------------------
DUSHA_EMOTIONS = {"angry": "angry", "sad": "sad", "neutral": "neutral", "positive": "happy"}
_DUSHA_EMOTION_FIELDS = ("emotion", "speaker_emo", "annotator_emo", "golden_emo")
_DUSHA_SPEAKER_FIELDS = ("speaker_id", "source_id", "annotator_id")


def read_dusha(manifest: str | Path) -> list[Utterance]:
    """Dusha from one manifest file (JSON lines or TSV); audio paths are relative to it."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"{manifest} is not a file; pass a Dusha manifest (.jsonl or .tsv).")
    if manifest.suffix == ".jsonl":
        rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with open(manifest, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    items, skipped, seen = [], Counter(), set()
    for row in rows:
        emo_field = next((k for k in _DUSHA_EMOTION_FIELDS if row.get(k)), None)
        if "audio_path" not in row or emo_field is None:
            raise DataError(f"{manifest}: rows need 'audio_path' and one of {', '.join(_DUSHA_EMOTION_FIELDS)}.")
        emotion = DUSHA_EMOTIONS.get(str(row[emo_field]).strip().lower())
        if emotion is None:
            skipped["other"] += 1
            continue
        path = (manifest.parent / row["audio_path"]).resolve()
        if path in seen:  # raw crowd manifests list one clip once per annotator
            continue
        seen.add(path)
        spk_field = next((k for k in _DUSHA_SPEAKER_FIELDS if row.get(k)), None)
        speaker = f"dusha:{row[spk_field]}" if spk_field else f"dusha:{path.stem}"
        items.append(Utterance(path, emotion, speaker, None, "dusha"))
    return _require(items, manifest, "Dusha", skipped)


# --- Folder + CSV --------------------------------------------------------------
def read_folder_csv(csv_path: str | Path) -> list[Utterance]:
    """A CSV with ``path,label[,speaker][,gender]``; labels must be canonical emotions."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path} is not a file; pass a CSV with columns path,label,speaker.")
    items = []
    for n, row in enumerate(read_csv_table(csv_path, ("path", "label"), "(and optionally 'speaker', 'gender')"),
                            start=2):
        label = (row["label"] or "").strip().lower()
        if label not in EMOTIONS:
            raise DataError(f"{csv_path}, line {n}: label {label!r} is not one of {', '.join(EMOTIONS)}.")
        gender = (row.get("gender") or "").strip().lower() or None
        items.append(Utterance((csv_path.parent / row["path"]).resolve(), label,
                               f"csv:{(row.get('speaker') or '').strip() or Path(row['path']).stem}",
                               gender if gender in ("male", "female") else None, "csv"))
    return _require(items, csv_path, "CSV-listed", Counter())


def read_csv_table(path: str | Path, columns: Sequence[str], hint: str = "") -> list[dict[str, str]]:
    """The rows of a user's CSV that must have ``columns`` in its header (extra columns are kept).

    Read as UTF-8 with or without a byte-order mark (spreadsheets write one); a missing column or
    a file that is not text is a :class:`DataError` naming what was found."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            found = [c.strip() for c in reader.fieldnames or []]
            if not set(columns) <= set(found):
                need = ", ".join(repr(c) for c in columns)
                raise DataError(f"{path} needs a header with the columns {need}{' ' + hint if hint else ''} "
                                f"(found {found or 'no header'}).")
            return [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text CSV ({exc.reason} at byte {exc.start}).") from exc


READERS: dict[str, Callable[[str | Path], list[Utterance]]] = {
    "ravdess": read_ravdess, "crema-d": read_crema_d, "tess": read_tess, "savee": read_savee,
    "emodb": read_emodb, "ased": read_ased, "dusha": read_dusha, "csv": read_folder_csv,
}


#: the canonical emotions each reader can produce (None: whatever the CSV says)
READER_LABELS: dict[str, frozenset[str] | None] = {
    "ravdess": frozenset(RAVDESS_EMOTIONS.values()), "crema-d": frozenset(CREMAD_EMOTIONS.values()),
    "tess": frozenset(TESS_EMOTIONS.values()), "savee": frozenset(SAVEE_EMOTIONS.values()),
    "emodb": frozenset(EMODB_EMOTIONS.values()), "ased": frozenset(ASED_EMOTIONS.values()),
    "dusha": frozenset(DUSHA_EMOTIONS.values()), "csv": None,
}

LICENCES = {
    "ravdess": "RAVDESS (Livingstone & Russo 2018, doi:10.1371/journal.pone.0196391): CC BY-NC-SA 4.0 - "
               "non-commercial use only, derivatives shared under the same terms.",
    "ased": "ASED v1 (Retta et al. 2022, ACM TALLIP, doi:10.1145/3529759): 'freely available' with citation, "
            "no licence stated - research use.",
    "emodb": "EmoDB (Burkhardt et al. 2005, Interspeech): distributed by its authors without a licence file "
             "(audb metadata: unrestricted) - cite it.",
}


def corpus_licence(corpus: str) -> str:
    return LICENCES.get(corpus, f"{corpus}: check that corpus's licence before use.")


def read_corpus(corpus: str, path: str | Path) -> list[Utterance]:
    """Read ``path`` with the reader named ``corpus`` (one of :data:`READERS`)."""
    try:
        reader = READERS[corpus]
    except KeyError:
        raise DataError(f"Unknown corpus {corpus!r}; choose one of {', '.join(READERS)}.") from None
    return reader(path)


def corpus_stats(utterances: Sequence[Utterance], *, trim_db: float = 40.0, max_decoded: int = 300,
                 seed: int = 0) -> dict:
    """Class and speaker counts of a corpus, and clip durations before and after silence trimming.

    Durations before trimming come from file headers (every clip); after trimming, from
    decoding a random sample of at most ``max_decoded`` clips (stated in the result)."""
    import random

    import soundfile as sf

    from ser.audio.decode import load_audio
    from ser.emotion.features import trim_silence

    by_label: dict[str, int] = {}
    by_speaker: dict[str, int] = {}
    by_gender: dict[str, int] = {}
    for u in utterances:
        by_label[u.label] = by_label.get(u.label, 0) + 1
        by_speaker[u.speaker] = by_speaker.get(u.speaker, 0) + 1
        by_gender[u.gender or "unknown"] = by_gender.get(u.gender or "unknown", 0) + 1
    raw = []
    for u in utterances:
        try:
            info = sf.info(str(u.path))
            raw.append(info.frames / info.samplerate)
        except (RuntimeError, OSError, sf.LibsndfileError):
            continue
    sample = list(utterances)
    random.Random(seed).shuffle(sample)
    sample = sample[:max_decoded]
    before, after = [], []
    for u in sample:
        try:
            a = load_audio(u.path)
        except Exception:  # noqa: BLE001 - a bad clip is counted, not fatal, in an overview
            continue
        before.append(a.duration_s)
        after.append(len(trim_silence(a.y, top_db=trim_db)) / a.sr)
    return {"clips": len(utterances), "labels": dict(sorted(by_label.items())),
            "speakers": dict(sorted(by_speaker.items())), "genders": by_gender,
            "durations_s": raw, "sample_before_s": before, "sample_after_s": after,
            "sample_size": len(before), "trim_db": trim_db}
