"""The REST API through FastAPI's TestClient: every endpoint, every bad input, no 5xx."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from audiogen import encode, tone
from ser.serve.api import APISettings, create_app


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    return TestClient(create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1)))


def _wav(y=None, sr=16000, fmt="wav"):
    return encode(tone(2.0, sr) if y is None else y, sr, fmt)


def test_healthz_and_models(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["workers"] == 1 and h["queue"] == 2
    names = [m["name"] for m in client.get("/v1/models").json()["models"]]
    assert "default" in names  # the shipped model is listed with its card's figures
    d = next(m for m in client.get("/v1/models").json()["models"] if m["name"] == "default")
    assert len(d["labels"]) == 8 and 0 < d["uar"] < 1 and "speaker" in d["protocol"].lower()
    per = {r["corpus"]: r for r in d["per_corpus"]}
    assert per["ravdess"]["in_training"] and 0 < per["ravdess"]["loco_uar"] < 1 and per["ravdess"]["loco_chance"] > 0


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "m4a", "webm"])
def test_classify_returns_the_students_shape(client, fmt):
    r = client.post("/v1/classify", files={"file": (f"clip.{fmt}", _wav(fmt=fmt, sr=48000 if fmt == "webm" else 16000),
                                                    "application/octet-stream")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"emotion", "probabilities", "uncertain", "model"}
    assert body["emotion"] == max(body["probabilities"], key=body["probabilities"].get)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3 and body["model"].startswith("tiny@")


@pytest.mark.parametrize("name, data, status, words", [
    ("empty.wav", b"", 400, "empty"),
    ("notes.wav", b"just some text, not audio " * 10, 400, "text file"),
    ("silent.wav", _wav(np.zeros(32000, np.float32)), 400, "silence"),
    ("short.wav", _wav(tone(0.2)), 400, "at least 0.50 s"),
    ("cut.wav", _wav()[:3000], 400, "truncated"),
    ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200), 400, "image"),
])
def test_classify_bad_audio_is_a_400_with_a_reason(client, name, data, status, words):
    r = client.post("/v1/classify", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "audio_error" and words in err["message"].lower()


def test_malformed_requests_are_422_json(client):
    r = client.post("/v1/classify")
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
    r = client.post("/v1/classify", data={"file": "not a file"})
    assert r.status_code == 422
    r = client.post("/v1/analyze", files={"file": ("a.wav", _wav(), "audio/wav")}, data={"speakers": "zero"})
    assert r.status_code == 422 and "speakers" in r.json()["error"]["message"]
    assert client.get("/v1/nothing").status_code == 404


def test_analyze_with_a_transcript_and_its_bad_options(client):
    from audiogen import speak

    from ser.transcription.wer import wer

    said = "Good morning, I have wonderful news: the grant was approved."
    y = speak(said, "en-us+m1", speed=140)
    r = client.post("/v1/analyze", files={"file": ("talk.wav", _wav(y), "audio/wav")},
                    data={"speakers": "1", "transcribe": "true", "language": "en"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert wer(said, " ".join(w["text"] for w in a["words"])) <= 0.2, a["words"]
    assert a["utterances"][0]["speaker"] == "SPEAKER_00" and a["provenance"]["transcript"]["language_given"]
    for data, words in (({"transcribe": "true", "language": "klingon"}, "language"),
                        ({"language": "en"}, "transcribe=true")):
        r = client.post("/v1/analyze", files={"file": ("talk.wav", _wav(y), "audio/wav")}, data=data)
        assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def test_analyze_returns_the_analysis_json(client):
    y = np.concatenate([tone(2.0, freq=180.0), np.zeros(8000, np.float32), tone(2.0, freq=120.0, seed=2)])
    r = client.post("/v1/analyze", files={"file": ("talk.wav", _wav(y), "audio/wav")},
                    data={"speakers": "1", "window_s": "1.5", "hop_s": "0.5", "label_set": "valence3"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["schema"] == "ser.analysis/2" and sorted(a["labels"]) == ["negative", "neutral", "positive"]
    assert a["provenance"]["window_s"] == 1.5 and a["provenance"]["speaker_counts"]["num_speakers"] == 1
    for seg in a["segments"]:
        assert {"emotion", "probabilities"} <= set(seg)


@pytest.mark.parametrize("data, words", [
    ({"speakers": "2", "min_speakers": "1"}, "not both"),
    ({"label_set": "twelve"}, "unknown label set"),
    ({"diarizer": "nemo"}, "unknown diarizer"),
    ({"window_s": "2", "hop_s": "5"}, "hop_s"),
])
def test_analyze_bad_parameters_are_400(client, data, words):
    r = client.post("/v1/analyze", files={"file": ("a.wav", _wav(), "audio/wav")}, data=data)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"].lower()


def test_pyannote_without_access_is_a_400_naming_builtin(client, monkeypatch):
    for v in ("SER_HF_TOKEN", "HF_TOKEN", "HUGGINGFACE_TOKEN", "SER_PYANNOTE_PIPELINE"):
        monkeypatch.delenv(v, raising=False)
    r = client.post("/v1/analyze", files={"file": ("a.wav", _wav(), "audio/wav")}, data={"diarizer": "pyannote"})
    assert r.status_code == 400 and "builtin" in r.json()["error"]["message"]


def test_upload_limit_is_413(tiny_model_dir):
    c = TestClient(create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1, max_upload_mb=0.05)))
    r = c.post("/v1/classify", files={"file": ("big.wav", _wav(tone(3.0)), "audio/wav")})  # ~96 kB
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_api_key(tiny_model_dir):
    c = TestClient(create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1, api_key="s3cret")))
    files = {"file": ("a.wav", _wav(), "audio/wav")}
    assert c.post("/v1/classify", files=files).status_code == 401
    assert c.post("/v1/classify", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.post("/v1/classify", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # liveness needs no key


def test_saturation_answers_429_with_retry_after(tiny_model_dir):
    app = create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1, queue=0))
    c = TestClient(app)
    gate = app.state.gate
    assert gate.try_enter()  # one analysis in flight fills 1 worker + 0 waiting
    try:
        r = c.post("/v1/classify", files={"file": ("a.wav", _wav(), "audio/wav")})
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        assert r.json()["error"]["type"] == "busy"
    finally:
        gate.leave()
    assert c.post("/v1/classify", files={"file": ("a.wav", _wav(), "audio/wav")}).status_code == 200
    assert gate.inflight == 0  # every request released its slot, errors included


@pytest.mark.slow
def test_openapi_schema_fuzzing_finds_no_server_error(tiny_model_dir, tmp_path, monkeypatch):
    """Property-based requests generated from the OpenAPI schema (schemathesis): never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    monkeypatch.setenv("SER_HISTORY_DB", str(tmp_path / "h.sqlite"))  # /v1/voices writes the library

    app = create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures, seen = [], []

    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            seen.append((operation.label, response.status_code))
            if response.status_code >= 500:
                failures.append((operation.label, response.status_code, response.text[:200]))

        check()
    assert not failures, failures
    assert {label for label, _ in seen} >= {"POST /v1/classify", "POST /v1/analyze", "GET /v1/models", "GET /healthz",
                                            "GET /v1/voices", "POST /v1/voices", "DELETE /v1/voices/{name}"}
    assert len(seen) >= 40


def test_with_a_key_every_route_but_health_is_closed(tiny_model_dir):
    c = TestClient(create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1, api_key="s3cret")))
    for path in ("/v1/models", "/docs", "/redoc", "/openapi.json"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200, path
    assert c.get("/healthz").status_code == 200


def test_the_key_is_checked_before_a_byte_of_the_body_is_read(tiny_model_dir):
    """A 47 MB upload without the key is refused on its headers: the body is never received."""
    import asyncio

    app = create_app(APISettings(model=str(tiny_model_dir), device="cpu", workers=1, api_key="s3cret"))
    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/analyze", "raw_path": b"/v1/analyze", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"47000000")],
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401 and not received
