"""Known voices: the library (add, rename, merge, delete, per user, embeddings only), the
identification rules, and naming in a real analysis."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from conftest import RAVDESS, needs_ravdess
from ser.analysis.result import SpeakerTurn
from ser.diarization.voices import Thresholds, Voice, apply, check_name, identify, unit
from ser.errors import ConfigError, DataError
from ser.serve.history import History
from ser.serve.voices import VoiceLibrary, voice_rows


def _vec(seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal(192))


def _near(v: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at cosine ``cos`` from ``v``."""
    r = np.random.default_rng(seed).standard_normal(192)
    r -= r @ v * v
    r = unit(r)
    return unit(cos * v + np.sqrt(1 - cos ** 2) * r)


def test_library_add_list_rename_merge_delete(tmp_path):
    lib = VoiceLibrary(tmp_path / "h.sqlite")
    info = lib.add("Maria", [(_vec(1), 4.0, "clip a.wav"), (_vec(2), 6.0, "clip b.wav")])
    assert (info.name, info.samples, info.seconds) == ("Maria", 2, 10.0)
    lib.add("Maria", [(_vec(3), 3.0, "turns of SPEAKER_01 in s2.wav")])  # adding to an existing voice
    lib.add("Tom", [(_vec(4), 5.0, "clip t.wav")])
    assert [(v.name, v.samples) for v in lib.list()] == [("Maria", 3), ("Tom", 1)]
    centroid = {v.name: v for v in lib.voices()}["Maria"]
    expect = unit(4 * _vec(1) + 6 * _vec(2) + 3 * _vec(3))  # weighted by seconds of speech
    assert np.allclose(centroid.vector, expect, atol=1e-5) and centroid.samples == 3
    lib.rename("Tom", "Tom B.")
    with pytest.raises(ConfigError, match="exists already"):
        lib.rename("Tom B.", "Maria")
    merged = lib.merge("Tom B.", "Maria")
    assert merged.samples == 4 and [v.name for v in lib.list()] == ["Maria"]
    assert lib.delete("Maria") and not lib.delete("Maria") and lib.list() == []
    with pytest.raises(DataError, match="No voice named"):
        lib.rename("Nobody", "X")


def test_names_are_checked():
    assert check_name("  Ana\tMaría  ") == "Ana María"
    for bad, msg in (("", "empty"), ("SPEAKER_01", "anonymous"), ("x" * 81, "at most"), ("\x00\x01", "empty")):
        with pytest.raises(ConfigError, match=msg):
            check_name(bad)
    with pytest.raises(ConfigError, match="192-d"):
        VoiceLibrary.__new__(VoiceLibrary).add("A", [(np.zeros(10), 1.0, "x")])


def test_voices_are_per_user_and_go_with_export_all_and_delete_all(tmp_path):
    db = tmp_path / "h.sqlite"
    lib = VoiceLibrary(db)
    lib.add("Maria", [(_vec(1), 4.0, "clip a.wav")], owner="alice")
    lib.add("Maria", [(_vec(2), 4.0, "clip b.wav")], owner="bob")  # the same name, another user's voice
    assert [v.name for v in lib.list("alice")] == ["Maria"] and lib.list(None) == []
    assert not np.allclose(lib.voices("alice")[0].vector, lib.voices("bob")[0].vector)
    assert not lib.delete("Maria", owner="carol") and len(lib.list("alice")) == 1
    h = History(db)
    z = zipfile.ZipFile(BytesIO(h.export_all("alice")))
    voices = json.loads(z.read("voices.json"))["voices"]
    assert [(v["name"], v["samples"][0]["source"]) for v in voices] == [("Maria", "clip a.wav")]
    assert len(voices[0]["samples"][0]["embedding"]) == 192
    h.delete_all("alice")
    assert lib.list("alice") == [] and [v.name for v in lib.list("bob")] == ["Maria"]
    h.delete_all(None)  # everybody's (single-user dashboard or an admin)
    assert lib.list("bob") == []


def test_only_embeddings_are_stored(tmp_path, speech_like):
    """Enrolling from a clip stores a 768-byte embedding: no sample of the clip reaches the files."""
    from ser.diarization.voices import clip_vector

    db = tmp_path / "h.sqlite"
    y = np.asarray(speech_like, np.float32)
    vec, seconds = clip_vector(y)
    VoiceLibrary(db).add("Maria", [(vec, seconds, "clip maria.wav")])
    with sqlite3.connect(db) as c:
        blobs = [r[0] for r in c.execute("SELECT vector FROM voice_samples")]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert [len(b) for b in blobs] == [768]
    assert not {"audio"} & {col for t in ("voices", "voice_samples")
                            for col in (r[1] for r in sqlite3.connect(db).execute(f"PRAGMA table_info({t})"))}
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    pcm16 = (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()
    mid = len(pcm16) // 2
    for chunk in (pcm16[mid:mid + 32], y.astype("<f4").tobytes()[mid:mid + 32]):
        assert chunk not in raw  # neither the 16-bit nor the float samples
    assert {"voices", "voice_samples"} <= tables


def _turns(*spec):
    return [SpeakerTurn(a, b, s) for a, b, s in spec]


def test_identify_names_suggests_and_leaves_strangers_alone():
    maria, tom = _vec(10), _vec(11)
    voices = [Voice("Maria", maria), Voice("Tom", tom)]
    turns = _turns((0, 10, "SPEAKER_00"), (10, 20, "SPEAKER_01"), (20, 30, "SPEAKER_02"))
    vecs = {"SPEAKER_00": (_near(maria, 0.8, 1), 10.0), "SPEAKER_01": (_near(tom, 0.5, 2), 10.0),
            "SPEAKER_02": (_vec(12), 10.0)}
    m = {x.speaker: x for x in identify(turns, vecs, voices, Thresholds(accept=0.55, uncertain=0.45, merge=0.6))}
    assert (m["SPEAKER_00"].status, m["SPEAKER_00"].voice) == ("named", "Maria")
    assert (m["SPEAKER_01"].status, m["SPEAKER_01"].voice) == ("uncertain", "Tom")  # says whom, names nobody
    assert m["SPEAKER_02"].status == "unknown" and m["SPEAKER_02"].voice is None
    out = apply(turns, list(m.values()))
    assert [t.speaker for t in out] == ["Maria", "SPEAKER_01", "SPEAKER_02"]


def test_one_name_per_speaker_and_too_little_speech_is_not_named():
    maria = _vec(20)
    voices = [Voice("Maria", maria)]
    turns = _turns((0, 10, "SPEAKER_00"), (10, 20, "SPEAKER_01"), (20, 21, "SPEAKER_02"))
    vecs = {"SPEAKER_00": (_near(maria, 0.7, 1), 10.0), "SPEAKER_01": (_near(maria, 0.9, 2), 10.0),
            "SPEAKER_02": (_near(maria, 0.95, 3), 1.0)}
    th = Thresholds(accept=0.55, uncertain=0.45, merge=0.95)  # merging off: the weaker one is not named
    m = {x.speaker: x for x in identify(turns, vecs, voices, th)}
    assert m["SPEAKER_01"].status == "named" and m["SPEAKER_00"].status == "unknown"
    assert m["SPEAKER_02"].status == "unknown"  # 1 s of speech: below min_speech_s


def test_a_split_speaker_merges_into_the_named_one_unless_they_talk_at_once():
    maria = _vec(30)
    voices = [Voice("Maria", maria)]
    vecs = {"SPEAKER_00": (_near(maria, 0.8, 1), 10.0), "SPEAKER_01": (_near(maria, 0.7, 2), 10.0),
            "SPEAKER_02": (_vec(31), 10.0)}
    th = Thresholds(accept=0.55, uncertain=0.45, merge=0.6)
    apart = _turns((0, 5, "SPEAKER_00"), (5, 9, "SPEAKER_01"), (9, 12, "SPEAKER_00"), (12, 20, "SPEAKER_02"))
    m = identify(apart, vecs, voices, th)
    assert [x.status for x in m] == ["named", "merged", "unknown"]
    assert [(t.start_s, t.end_s, t.speaker) for t in apply(apart, m)] == [(0, 12, "Maria"), (12, 20, "SPEAKER_02")]
    kept = identify(apart, vecs, voices, th, min_speakers=3)  # the user said three people: no merge below that
    assert [x.status for x in kept] == ["named", "unknown", "unknown"]
    together = _turns((0, 10, "SPEAKER_00"), (2, 8, "SPEAKER_01"), (12, 20, "SPEAKER_02"))  # two people at once
    assert [x.status for x in identify(together, vecs, voices, th)] == ["named", "unknown", "unknown"]


def test_voice_rows_summarise_named_voices():
    d = {"turns": [{"start_s": 0, "end_s": 6, "speaker": "Maria"}, {"start_s": 6, "end_s": 8, "speaker": "SPEAKER_01"}],
         "segments": [{"start_s": 0, "end_s": 6, "speaker": "Maria", "probabilities": {"happy": 0.75, "sad": 0.25}}],
         "provenance": {"voices": {"speakers": [{"speaker": "SPEAKER_00", "status": "named", "voice": "Maria",
                                                 "score": 0.8}]}}}
    (row,) = voice_rows(d)
    assert row["voice"] == "Maria" and row["talk_s"] == 6 and row["share_of_speech"] == 0.75
    assert row["top_emotion"] == "happy" and row["p_happy"] == 0.75 and row["similarity"] == 0.8
    assert voice_rows({"turns": [], "provenance": {}}) == []


def _clips() -> dict[str, list[Path]]:
    return {a: sorted((RAVDESS / f"Actor_{a}").glob("*.flac")) for a in ("01", "04")}


@needs_ravdess
def test_an_enrolled_actor_is_named_in_a_new_recording_and_others_are_not(tmp_path):
    """RAVDESS: enrol actor 01 from three clips, then analyse a conversation of 01 and 04 built
    from other clips: 01's turns carry the name, 04's do not."""
    from ser.analysis.demo import conversation
    from ser.analysis.pipeline import analyze
    from ser.audio.decode import Audio, load_audio
    from ser.diarization.voices import clip_vector

    clips = _clips()
    lib = VoiceLibrary(tmp_path / "h.sqlite")
    lib.add("Maria", [(*clip_vector(load_audio(p).y), p.name) for p in clips["01"][:3]])
    parts = []
    for k in range(6):
        for actor in ("01", "04"):
            parts.append((load_audio(clips[actor][10 + 7 * k]).y, actor, None))
    y, ref = conversation(parts, seed=3)
    a = analyze(Audio(y=y, sr=16000, source_sr=16000, source_channels=1, codec="pcm", name="conv.wav"),
                voices=lib.voices(), num_speakers=2, cache=None)
    ident = {m["status"]: m for m in a.provenance["voices"]["speakers"]}
    assert "named" in ident and ident["named"]["voice"] == "Maria"
    named = {"01": 0.0, "04": 0.0}
    talk = {"01": 0.0, "04": 0.0}
    for t in ref:
        talk[t.speaker] += t.end_s - t.start_s
        named[t.speaker] += sum(max(0.0, min(u.end_s, t.end_s) - max(u.start_s, t.start_s))
                                for u in a.turns if u.speaker == "Maria")
    # the enrolled actor, named (what is missing is speech the diarizer missed or gave the other speaker)
    assert named["01"] / talk["01"] >= 0.75, (named, talk)
    assert named["04"] / talk["04"] <= 0.05, (named, talk)  # the other actor, not


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory):
    """espeak-ng's en-us+m1 ("Ben") and en+f5: CAM++ puts them far apart (cosine ~0.25) and each
    voice close to itself in other words (~0.9). Enrolment clip, and a conversation of both."""
    from audiogen import speak, write
    from ser.analysis.demo import conversation

    d = tmp_path_factory.mktemp("voices")
    ben = write(d / "ben.wav", speak("Good morning, I have wonderful news about the grant we asked for.", "en-us+m1",
                                     pitch=30), 16000, "wav")
    lines = ["We should send the budget to the office before Monday.", "I can call them tomorrow morning.",
             "The printer on the second floor is broken again.", "Then we will use the one in the library."]
    clips = [(speak(t, "en-us+m1" if k % 2 == 0 else "en+f5", pitch=30 if k % 2 == 0 else 70), str(k % 2), None)
             for k, t in enumerate(lines * 2)]
    y, ref = conversation(clips, seed=5)
    talk = write(d / "talk.wav", y, 16000, "wav")
    return ben, talk, ref


def test_cli_enrols_and_analyze_names_and_summarises(two_voices, tmp_path, monkeypatch, tiny_model_dir):
    from ser.cli import main

    ben, talk, _ = two_voices
    db = tmp_path / "h.sqlite"
    monkeypatch.setenv("SER_HISTORY_DB", str(db))
    assert main(["voices", "list"]) == 0 and VoiceLibrary(db).list() == []
    assert main(["voices", "add", "Ben", str(ben)]) == 0
    assert [v.name for v in VoiceLibrary(db).list()] == ["Ben"]
    assert main(["voices", "add", "SPEAKER_03", str(ben)]) == 2  # an anonymous label is not a name
    copy = tmp_path / "again.wav"
    copy.write_bytes(talk.read_bytes()[:-2] + b"\0\0")  # another file (its own output), the same voices
    out = tmp_path / "out"
    assert main(["analyze", str(talk), str(copy), "--speakers", "2", "--model", str(tiny_model_dir), "--out", str(out),
                 "--quiet"]) == 0
    d = json.loads((out / "talk.json").read_text())
    assert "Ben" in d["speakers"] and len(d["speakers"]) == 2
    named = [m for m in d["provenance"]["voices"]["speakers"] if m["status"] == "named"]
    assert [m["voice"] for m in named] == ["Ben"] and named[0]["score"] >= 0.55
    import csv

    rows = list(csv.DictReader(open(out / "voices.csv", encoding="utf-8")))
    assert [r["voice"] for r in rows] == ["Ben", "Ben"] and float(rows[0]["talk_s"]) > 5
    assert {r["voices"] for r in csv.DictReader(open(out / "summary.csv", encoding="utf-8"))} == {"Ben"}
    out2 = tmp_path / "anon"
    assert main(["analyze", str(talk), "--speakers", "2", "--voices", "none", "--model", str(tiny_model_dir),
                 "--out", str(out2), "--quiet"]) == 0
    d2 = json.loads((out2 / "talk.json").read_text())
    assert "Ben" not in d2["speakers"] and "voices" not in d2["provenance"]
    assert main(["voices", "rename", "Ben", "Benjamin"]) == 0 and main(["voices", "delete", "Benjamin"]) == 0
    assert VoiceLibrary(db).list() == []


def test_api_voices(two_voices, tmp_path, monkeypatch, tiny_model_dir):
    from fastapi.testclient import TestClient

    from ser.serve.api import APISettings, create_app

    ben, talk, _ = two_voices
    monkeypatch.setenv("SER_HISTORY_DB", str(tmp_path / "h.sqlite"))
    c = TestClient(create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1)))
    r = c.post("/v1/voices", data={"name": "Ben"}, files=[("files", ("ben.wav", ben.read_bytes(), "audio/wav"))])
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Ben" and r.json()["samples"] == 1
    assert [v["name"] for v in c.get("/v1/voices").json()["voices"]] == ["Ben"]
    bad = c.post("/v1/voices", data={"name": "Ben"}, files=[("files", ("x.wav", b"not audio", "audio/wav"))])
    assert bad.status_code == 400 and "error" in bad.json()
    a = c.post("/v1/analyze", files={"file": ("talk.wav", talk.read_bytes(), "audio/wav")}, data={"speakers": "2"})
    assert a.status_code == 200, a.text
    assert "Ben" in a.json()["speakers"]
    a = c.post("/v1/analyze", files={"file": ("talk.wav", talk.read_bytes(), "audio/wav")},
               data={"speakers": "2", "voices": "false"})
    assert "Ben" not in a.json()["speakers"]
    assert c.delete("/v1/voices/Ben").status_code == 200 and c.delete("/v1/voices/Ben").status_code == 404


def test_voices_page_lists_renames_and_charts_a_voice_across_recordings(make_app, tmp_path):
    """The Known voices page under AppTest: the library's voices, a rename, and a voice's emotion
    mix across two saved analyses (in time order, with its CSV)."""
    import os

    from ser.analysis.result import Analysis, EmotionSegment

    page = make_app()
    db = os.environ["SER_HISTORY_DB"]
    VoiceLibrary(db).add("Maria", [(_vec(1), 6.0, "clip <b>m</b>.wav")])
    h = History(db)
    for k, p in enumerate((0.8, 0.3)):
        probs = {"happy": p, "sad": 1 - p}
        h.save(Analysis(f"session{k}.wav", 10.0, ["happy", "sad"], [SpeakerTurn(0, 8, "Maria")],
                        [EmotionSegment(0, 8, "Maria", "happy" if p > 0.5 else "sad", probs)],
                        provenance={"audio": {"sha256": f"{k}" * 64}, "voices": {"library": 1, "speakers": [
                            {"speaker": "SPEAKER_00", "status": "named", "voice": "Maria", "score": 0.7}]}}), {})
    page.switch_page("pages/voices.py").run()
    assert not page.exception and page.title[0].value == "Known voices", [e.value for e in page.error]
    table, across = (d.value for d in page.dataframe)  # the library, then the voice across recordings
    assert list(table["voice"]) == ["Maria"] and table["from"][0] == "clip <b>m</b>.wav"  # shown as text
    assert list(across["recording"]) == ["session0.wav", "session1.wav"] and list(across["p_happy"]) == [0.8, 0.3]
    page.text_input(key="voices_rename_new").set_value("Maria G.")
    page.button[[b.label for b in page.button].index("Rename")].click().run()
    assert not page.exception and [v.name for v in VoiceLibrary(db).list()] == ["Maria G."]


def test_a_strangers_stretch_in_a_named_speaker_goes_back_to_an_anonymous_speaker():
    """The diarizer put someone else's turn (10-14 s) in SPEAKER_00's cluster: the name stays on
    Maria's own turns only; that turn goes to the unnamed speaker it sounds like."""
    from ser.diarization.voices import Stretch, pool, screen

    maria, tom = _vec(40), _vec(41)
    voices = [Voice("Maria", maria)]
    turns = _turns((0, 5, "SPEAKER_00"), (5, 10, "SPEAKER_01"), (10, 14, "SPEAKER_00"), (14, 20, "SPEAKER_00"))
    st = [Stretch("SPEAKER_00", 0, 500, _near(maria, 0.8, 1)), Stretch("SPEAKER_01", 500, 1000, _near(tom, 0.9, 2)),
          Stretch("SPEAKER_00", 1000, 1400, _near(tom, 0.85, 3)), Stretch("SPEAKER_00", 1400, 2000, _near(maria, 0.8, 4))]
    th = Thresholds(accept=0.55, uncertain=0.45, merge=0.6, stretch_floor=0.4)
    m = identify(turns, pool(st), voices, th)
    assert [x.status for x in m] == ["named", "unknown"]
    assert screen(apply(turns, m), st, m, voices, None) == apply(turns, m)  # off: the names as matched
    out = screen(apply(turns, m), st, m, voices, th.stretch_floor)
    assert [(t.start_s, t.end_s, t.speaker) for t in out] == [(0, 5, "Maria"), (5, 14, "SPEAKER_01"), (14, 20, "Maria")]
    assert all(type(t.start_s) is float for t in out)
    st[2] = Stretch("SPEAKER_00", 1000, 1400, _vec(42))  # like nobody here: keeps the cluster's own label
    out = screen(apply(turns, m := identify(turns, pool(st), voices, th)), st, m, voices, th.stretch_floor)
    assert [t.speaker for t in out] == ["Maria", "SPEAKER_01", "SPEAKER_00", "Maria"]
