"""Where analyses meet users beyond one call.

- :mod:`ser.serve.api` — the HTTP API (FastAPI): analyze, predict, models, health;
- :mod:`ser.serve.live` — live emotion from a microphone stream (:class:`LiveScorer`), with
  its engine in :mod:`ser.serve.live_engine`;
- :mod:`ser.serve.batch` — analyzing many files (resumable, local processes) and
  :mod:`ser.serve.scale` — the same on a Ray cluster;
- :mod:`ser.serve.history` — the per-user store of analyses; :mod:`ser.serve.auth` — sign-in.
"""
