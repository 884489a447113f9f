"""Corpus readers on synthetic file trees that follow each corpus's naming convention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ser.training.datasets import (
    read_corpus,
    read_crema_d,
    read_dusha,
    read_emodb,
    read_folder_csv,
    read_ravdess,
    read_savee,
    read_tess,
)
from ser.errors import DataError


def touch(root: Path, *names: str) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"RIFF")


def test_ravdess_wav_and_flac_layouts(tmp_path):
    touch(tmp_path, "Actor_01/03-01-05-02-01-01-01.wav", "Actor_02/03-01-02-01-02-02-02.flac",
          "Actor_02/03-02-05-01-01-01-02.wav",  # song, not speech: skipped
          "Actor_01/notes.txt", "Actor_03/03-01-09-01-01-01-03.wav")  # unknown emotion: skipped
    items = read_ravdess(tmp_path)
    assert [(u.label, u.speaker, u.gender) for u in items] == [("angry", "ravdess:01", "male"), ("calm", "ravdess:02", "female")]
    assert [u.speaker for u in read_ravdess(tmp_path, actors=[2])] == ["ravdess:02"]


def test_crema_d_with_demographics(tmp_path):
    touch(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1002_IEO_HAP_HI.wav", "AudioWAV/1003_IEO_XXX_HI.wav")
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n")
    items = read_crema_d(tmp_path)
    assert [(u.label, u.speaker, u.gender) for u in items] == [("angry", "crema-d:1001", "male"), ("happy", "crema-d:1002", "female")]


def test_tess(tmp_path):
    touch(tmp_path, "OAF_angry/OAF_back_angry.wav", "YAF_pleasant_surprised/YAF_bath_ps.wav", "YAF_fear/YAF_bean_fear.wav")
    items = read_tess(tmp_path)
    assert sorted((u.label, u.speaker) for u in items) == [("angry", "tess:OAF"), ("fearful", "tess:YAF"), ("surprised", "tess:YAF")]
    assert {u.gender for u in items} == {"female"}


def test_savee_flat_and_nested(tmp_path):
    touch(tmp_path, "ALL/DC_a01.wav", "ALL/JE_sa03.wav", "AudioData/KL/su12.wav", "AudioData/KL/n01.wav")
    items = read_savee(tmp_path)
    assert sorted((u.label, u.speaker) for u in items) == [
        ("angry", "savee:DC"), ("neutral", "savee:KL"), ("sad", "savee:JE"), ("surprised", "savee:KL")]


def test_emodb_skips_boredom(tmp_path):
    touch(tmp_path, "wav/03a01Fa.wav", "wav/08b02Wb.wav", "wav/10a04La.wav")
    items = read_emodb(tmp_path)
    assert [(u.label, u.speaker, u.gender) for u in items] == [("happy", "emodb:03", "male"), ("angry", "emodb:08", "female")]


def test_dusha_jsonl_and_tsv(tmp_path):
    touch(tmp_path, "crowd/wavs/a.wav", "crowd/wavs/b.wav", "crowd/wavs/c.wav")
    rows = [{"audio_path": "wavs/a.wav", "emotion": "positive", "speaker_id": "s1"},
            {"audio_path": "wavs/b.wav", "emotion": "other", "speaker_id": "s2"},
            {"audio_path": "wavs/c.wav", "emotion": "angry", "speaker_id": "s2"}]
    (tmp_path / "crowd/train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items = read_dusha(tmp_path / "crowd/train.jsonl")
    assert [(u.label, u.speaker, u.path.name) for u in items] == [("happy", "dusha:s1", "a.wav"), ("angry", "dusha:s2", "c.wav")]
    tsv = "hash_id\taudio_path\tannotator_emo\tannotator_id\tsource_id\nh1\twavs/a.wav\tsad\tan1\tsrc9\nh1\twavs/a.wav\tsad\tan2\tsrc9\n"
    (tmp_path / "crowd/raw.tsv").write_text(tsv)
    items = read_dusha(tmp_path / "crowd/raw.tsv")
    assert [(u.label, u.speaker) for u in items] == [("sad", "dusha:src9")]  # one clip, listed by two annotators


def test_folder_csv(tmp_path):
    touch(tmp_path, "clips/x.wav", "clips/y.wav")
    (tmp_path / "labels.csv").write_text("path,label,speaker,gender\nclips/x.wav,angry,p1,female\nclips/y.wav,sad,p2,\n")
    items = read_folder_csv(tmp_path / "labels.csv")
    assert [(u.label, u.speaker, u.gender) for u in items] == [("angry", "csv:p1", "female"), ("sad", "csv:p2", None)]
    (tmp_path / "bad.csv").write_text("path,label\nclips/x.wav,bored\n")
    with pytest.raises(DataError, match=r"line 2: label 'bored' is not one of"):
        read_folder_csv(tmp_path / "bad.csv")
    (tmp_path / "nocols.csv").write_text("file,emotion\nx.wav,sad\n")
    with pytest.raises(DataError, match=r"needs a header with the columns 'path', 'label'.*found \['file', 'emotion'\]"):
        read_folder_csv(tmp_path / "nocols.csv")
    # a spreadsheet's CSV starts with a byte-order mark and may pad the header
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbfpath, label\r\nclips/x.wav,Angry\r\n")
    assert [u.label for u in read_folder_csv(tmp_path / "excel.csv")] == ["angry"]
    (tmp_path / "latin1.csv").write_bytes("path,label,speaker\nclips/x.wav,sad,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not a UTF-8 text CSV"):
        read_folder_csv(tmp_path / "latin1.csv")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        read_ravdess(tmp_path / "missing")
    touch(tmp_path, "x/readme.wav")
    with pytest.raises(DataError, match=r"No RAVDESS files found .*1 files did not match"):
        read_ravdess(tmp_path / "x")
    with pytest.raises(DataError, match="Unknown corpus 'iemocap'"):
        read_corpus("iemocap", tmp_path)


def test_ased_quirks(tmp_path):
    """ASED: emotion letter (any case), speaker PP, gender by the speaker's majority code,
    byte-identical repetitions kept once."""
    from ser.training.datasets import read_ased

    for name, content in [("01Neutral/n1-01-01-02-07.flac", b"a"), ("01Neutral/n1-01-02-02-07.flac", b"b"),
                          ("04Sad/S4-04-02-01-07.flac", b"c"),  # upper-case letter; gender code disagrees
                          ("05Angry/a5-02-01-01-12.flac", b"d"), ("05Angry/a5-02-02-01-12.flac", b"d"),  # duplicate
                          ("05Angry/readme.flac", b"e")]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    items = read_corpus("ased", tmp_path)
    assert [(u.label, u.speaker, u.gender) for u in items] == [
        ("neutral", "ased:07", "male"), ("neutral", "ased:07", "male"), ("sad", "ased:07", "male"),
        ("angry", "ased:12", "female")]
    assert {u.corpus for u in items} == {"ased"}
    with pytest.raises(DataError, match="No ASED files"):
        read_ased(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir(exist_ok=True)
    return tmp_path / "empty"
