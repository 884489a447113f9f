"""The REST API (``ser serve``): the students' ``{"emotion", "probabilities"}`` service, done properly.

    POST /v1/classify   one clip (multipart field ``file``) → {"emotion", "probabilities", "uncertain", "model"}
    POST /v1/analyze    a recording → the full Analysis JSON (schema ser.analysis/2; a transcript with transcribe=true)
    GET  /v1/models     the available models and their cards' key figures
    GET/POST /v1/voices, DELETE /v1/voices/{name}   the voice library analyses name speakers from
    GET  /healthz       liveness, the loaded model, the worker pool's load

Bad input is a 4xx JSON error ``{"error": {"type", "message"}}``, never a 500: 400 for
audio or parameters the library rejects, 401 for a missing/wrong API key, 413 for an
upload over the limit, 422 for a malformed request. CPU-heavy work runs in a bounded
thread pool off the event loop; when all workers are busy and the waiting room is full
the API answers 429 with ``Retry-After`` instead of queueing without bound.

Settings (environment): SER_API_KEY (require ``X-API-Key``), SER_API_MODEL (default
"default"), SER_API_DEVICE ("auto"), SER_API_WORKERS (default: CPU cores),
SER_API_QUEUE (requests allowed to wait, default 2 × workers), SER_API_MAX_UPLOAD_MB (50),
SER_API_BODY_TIMEOUT_S (30: the longest pause while a request body streams in).

Upload limits hold while the body streams in (:class:`BodyLimit`): a request announcing a
body over the limit gets 413 before any of it is read, a chunked body is cut off with 413
as soon as it passes the limit, and a body that stalls (or is shorter than its
Content-Length) gets 408 after the pause limit. Each of these closes the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ser import __version__
from ser.errors import AudioError, ConfigError, DataError, ModelError, SERError
from ser.serve.http_guards import MULTIPART_OVERHEAD, BodyLimit, HeaderDeadline, KeyGate  # noqa: F401  (BodyLimit, KeyGate: also imported from here)


@dataclass
class APISettings:
    model: str = "default"
    device: str = "auto"
    api_key: str | None = None
    workers: int = max(1, os.cpu_count() or 1)
    queue: int | None = None  # default 2 × workers
    max_upload_mb: float = 50.0
    retry_after_s: int = 2
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> "APISettings":
        env = os.environ
        return cls(model=env.get("SER_API_MODEL", "default"), device=env.get("SER_API_DEVICE", "auto"),
                   api_key=env.get("SER_API_KEY") or None,
                   workers=int(env.get("SER_API_WORKERS", 0) or max(1, os.cpu_count() or 1)),
                   queue=int(env["SER_API_QUEUE"]) if env.get("SER_API_QUEUE") else None,
                   max_upload_mb=float(env.get("SER_API_MAX_UPLOAD_MB", 50)),
                   body_timeout_s=float(env.get("SER_API_BODY_TIMEOUT_S", 30)),
                   header_timeout_s=float(env.get("SER_API_HEADER_TIMEOUT_S", 10)))


class ClassifyResult(BaseModel):
    emotion: str = Field(description="the most probable emotion")
    probabilities: dict[str, float] = Field(description="every label of the model, summing to 1")
    uncertain: bool = Field(description="no emotion clearly leads (the model card's margin)")
    model: str = Field(description="model id")


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class APIError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict | None = None):
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


def _error(status: int, type_: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


class _Gate:
    """At most ``workers`` running plus ``queue`` waiting; beyond that, refuse."""

    def __init__(self, workers: int, queue: int):
        self.capacity = workers + queue
        self.inflight = 0
        self.lock = threading.Lock()

    def try_enter(self) -> bool:
        with self.lock:
            if self.inflight >= self.capacity:
                return False
            self.inflight += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.inflight -= 1


ERRORS = {400: {"model": ErrorResponse, "description": "audio or parameters rejected"},
          401: {"model": ErrorResponse, "description": "API key missing or wrong"},
          413: {"model": ErrorResponse, "description": "upload over the size limit"},
          422: {"model": ErrorResponse, "description": "malformed request"},
          429: {"model": ErrorResponse, "description": "busy; retry after the Retry-After header"}}


#: room for the multipart envelope around an upload of the largest allowed size

class _Service:
    """The work behind the endpoints: the loaded models, and classify / analyze as run in the pool."""

    def __init__(self, s: APISettings, max_bytes: int):
        self.s, self.max_bytes = s, max_bytes
        self.state: dict[str, Any] = {}
        self.lock = threading.Lock()

    @property
    def model_loaded(self) -> bool:
        return "model" in self.state

    def model(self):
        with self.lock:
            if "model" not in self.state:
                from ser.emotion.model import load_model
                self.state["model"] = load_model(self.s.model, device=self.s.device)
            return self.state["model"]

    def pyannote(self):
        from ser.diarization.backends import PyannoteDiarizer
        with self.lock:
            if "pyannote" not in self.state:
                self.state["pyannote"] = PyannoteDiarizer(device=self.s.device)
        dia = self.state["pyannote"]
        try:
            dia._load()
        except ModelError as exc:  # not configured on this server: the client's choice, a 400
            raise ConfigError(str(exc)) from exc
        return dia

    def classify(self, data: bytes, name: str) -> dict:
        from ser.audio.decode import AudioLimits, load_audio
        m = self.model()
        audio = load_audio(data, name=name, limits=AudioLimits(min_duration_s=m.card.min_duration_s,
                                                              max_duration_s=600.0, max_bytes=self.max_bytes))
        from ser.threads import job_threads

        with job_threads(audio.duration_s):  # one thread for a clip: concurrent requests share the cores
            return {**m.predict(audio.y, audio.sr, name=name), "model": m.id}

    def analyze(self, data: bytes, name: str, params: dict) -> dict:
        from ser.audio.decode import AudioLimits, load_audio
        from ser.analysis.pipeline import analyze, relabel
        m = self.model()
        audio = load_audio(data, name=name, limits=AudioLimits(max_bytes=self.max_bytes))
        label_set = params.pop("label_set")
        dia = self.pyannote() if params.pop("diarizer") == "pyannote" else "builtin"
        if params.pop("voices"):
            from ser.cli.voices import library_voices

            params["voices"] = library_voices("auto") or None
        a = analyze(audio, model=m, name=name, diarizer=dia, **params)
        if label_set and label_set != m.card.label_set:
            a = relabel(a, label_set)
        return a.to_dict()


def _keep_uploads_in_memory(limit: int) -> None:
    """Recordings of people are not written to disk: Starlette's multipart parser spools a file
    part over 1 MB to a temporary file; raise that threshold to the upload limit (process-wide,
    and only ever upward), so an accepted upload stays in memory from arrival to answer."""
    from starlette.formparsers import MultiPartParser

    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, limit)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_req: Request, exc: APIError):
        return _error(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return _error(422, "invalid_request", "; ".join(parts) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception):  # a bug: say so without a traceback
        return _error(500, "internal_error", f"Unexpected {type(exc).__name__}; please report it.")


def create_app(settings: APISettings | None = None) -> FastAPI:
    s = settings or APISettings.from_env()
    queue = s.queue if s.queue is not None else 2 * s.workers
    pool = ThreadPoolExecutor(max_workers=s.workers, thread_name_prefix="ser-api")
    gate = _Gate(s.workers, queue)
    max_bytes = int(s.max_upload_mb * 1024 * 1024)
    service = _Service(s, max_bytes)
    _keep_uploads_in_memory(max_bytes + MULTIPART_OVERHEAD)
    from ser.diarization.backends import warm_up_in_background
    warm_up_in_background()  # the first request does not wait for the diarization networks to load

    app = FastAPI(title="ser — speech emotion recognition API", version=__version__,
                  description="POST audio, get emotions. Errors are JSON: {\"error\": {\"type\", \"message\"}}.")
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_bytes + MULTIPART_OVERHEAD, idle_timeout_s=s.body_timeout_s,
                       limit_text=f"{s.max_upload_mb:g} MB")
    app.add_middleware(KeyGate, api_key=s.api_key)  # added last: runs first, before the body is read

    def check_key(request: Request) -> None:
        if s.api_key:
            given = request.headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), s.api_key.encode()):
                raise APIError(401, "unauthorized", "Missing or wrong X-API-Key header.")

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise APIError(413, "too_large", f"The upload is over the {s.max_upload_mb:g} MB limit.")
        return data

    async def run_limited(fn, *args):
        if not gate.try_enter():
            raise APIError(429, "busy", "All workers are busy; retry shortly.",
                           {"Retry-After": str(s.retry_after_s)})
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except (AudioError, ConfigError, DataError) as exc:
            raise APIError(400, type(exc).__name__.replace("Error", "").lower() + "_error", str(exc))
        except ModelError as exc:
            raise APIError(503, "model_error", str(exc))
        except SERError as exc:
            raise APIError(400, "bad_request", str(exc))
        finally:
            gate.leave()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__, "model": s.model, "model_loaded": service.model_loaded,
                "workers": s.workers, "queue": queue, "inflight": gate.inflight}

    @app.get("/v1/models")
    def models() -> dict:
        from ser.emotion.folder import available_models, resolve_model_dir
        from ser.training.report import trust_table
        out = []
        for name in available_models():
            try:
                card = json.loads((resolve_model_dir(name) / "card.json").read_text(encoding="utf-8"))
            except (OSError, ValueError, SERError):
                continue
            metrics = card.get("metrics") or {}
            out.append({"name": name, "architecture": card.get("architecture"), "labels": card.get("labels"),
                        "label_set": card.get("label_set"), "licence": card.get("licence"),
                        "uar": (metrics.get("uar") or {}).get("mean"), "protocol": metrics.get("protocol"),
                        "per_corpus": trust_table(card), "active": name == s.model})
        return {"models": out}

    @app.post("/v1/classify", response_model=ClassifyResult, responses=ERRORS)
    async def classify(request: Request, file: UploadFile = File(..., description="one audio clip")) -> dict:
        check_key(request)
        data = await read_upload(file)
        return await run_limited(service.classify, data, file.filename or "upload")

    @app.post("/v1/analyze", responses=ERRORS)
    async def analyze_endpoint(
        request: Request,
        file: UploadFile = File(..., description="a recording"),
        speakers: int | None = Form(None, ge=1, le=20, description="exact number of speakers"),
        min_speakers: int | None = Form(None, ge=1, le=20),
        max_speakers: int | None = Form(None, ge=1, le=20),
        window_s: float = Form(2.0, ge=0.5, le=30.0, description="emotion window, seconds"),
        hop_s: float = Form(1.0, ge=0.1, le=30.0, description="emotion window hop, seconds"),
        label_set: str | None = Form(None, description="ravdess8, basic7, four, valence3 or valence2"),
        diarizer: str = Form("builtin", description="builtin, or pyannote when the server has a pipeline "
                                                    "($SER_PYANNOTE_PIPELINE folder or a token)"),
        adapt: str = Form("none", description="unsupervised adaptation: none, recording (centre the emotion "
                                              "features on this recording's own statistics) or speaker (on each "
                                              "diarized speaker's); best when the recording holds several emotions"),
        transcribe: bool = Form(False, description="add the transcript: words with their speaker, utterances with "
                                                   "their emotion (Whisper-base, offline)"),
        language: str | None = Form(None, max_length=16, description="the transcript's language, a Whisper code "
                                                                     "(default: detected)"),
        voices: bool = Form(True, description="name the speakers whose voice is in the server's library "
                                              "(/v1/voices); provenance.voices says who matched how well"),
    ) -> dict:
        check_key(request)
        if adapt not in ("none", "recording", "speaker"):
            raise APIError(400, "config_error", f"Unknown adapt {adapt!r}; choose none, recording or speaker.")
        if diarizer not in ("builtin", "pyannote"):
            raise APIError(400, "config_error", f"Unknown diarizer {diarizer!r}; choose builtin or pyannote.")
        if label_set is not None:
            from ser.emotion.labels import LABEL_SETS
            if label_set not in LABEL_SETS:
                raise APIError(400, "config_error", f"Unknown label set {label_set!r}; choose from "
                                                    f"{', '.join(LABEL_SETS)}.")
        if language is not None and not transcribe:
            raise APIError(400, "config_error", "language is the transcript's language: send transcribe=true too.")
        data = await read_upload(file)
        params = {"num_speakers": speakers, "min_speakers": min_speakers, "max_speakers": max_speakers,
                  "window_s": window_s, "hop_s": hop_s, "label_set": label_set, "cache": None,
                  "diarizer": diarizer, "adapt": adapt, "transcribe": transcribe, "language": language,
                  "voices": voices}
        return await run_limited(service.analyze, data, file.filename or "upload", params)

    _add_voice_routes(app, check_key, read_upload, run_limited, max_bytes)

    app.state.settings = s
    app.state.gate = gate
    return app


def _add_voice_routes(app: FastAPI, check_key, read_upload, run_limited, max_bytes: int) -> None:
    """``/v1/voices``: the server's voice library (ser.serve.voices; the single-user library)."""

    @app.get("/v1/voices")
    def list_voices(request: Request) -> dict:
        check_key(request)
        from ser.serve.voices import VoiceLibrary

        return {"voices": [v.__dict__ for v in VoiceLibrary().list()]}

    @app.post("/v1/voices")
    async def add_voice(request: Request, name: str = Form(..., max_length=200, description="the person's name"),
                        files: list[UploadFile] = File(..., description="clips of this one person talking alone")
                        ) -> dict:
        check_key(request)
        clips = [(await read_upload(f), f.filename or "upload") for f in files]
        return await run_limited(_enrol, name, clips, max_bytes)

    @app.delete("/v1/voices/{name}")
    def delete_voice(request: Request, name: str) -> dict:
        check_key(request)
        from ser.serve.voices import VoiceLibrary

        if not VoiceLibrary().delete(name):
            raise APIError(404, "not_found", "No voice by that name in the library.")
        return {"deleted": name}


def _enrol(name: str, clips: list[tuple[bytes, str]], max_bytes: int) -> dict:
    from ser.audio.decode import AudioLimits
    from ser.serve.voices import VoiceLibrary, enrol_clips

    return enrol_clips(VoiceLibrary(), name, clips, limits=AudioLimits(max_bytes=max_bytes, max_duration_s=600.0)).__dict__


def serve(host: str = "127.0.0.1", port: int = 8000, settings: APISettings | None = None) -> None:
    import uvicorn

    settings = settings or APISettings.from_env()
    # A request's head must be in within header_timeout_s of the connection opening (or of the
    # last answer): idle and header-drip connections are closed (HeaderDeadline). An idle
    # keep-alive connection goes after 5 s, a stalled or dripping body after body_timeout_s
    # (BodyLimit).
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": settings.header_timeout_s})
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_keep_alive=5, http=protocol)
