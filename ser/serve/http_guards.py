"""HTTP-layer guards of the API, in front of FastAPI: they act on a request's head and the bytes
as they arrive, before any route (and its multipart parser) sees them.

- ``KeyGate``: the API key, checked on the headers alone;
- ``BodyLimit``: the upload limit while the body streams in, a stalled body and a dripping one;
- ``HeaderDeadline``: uvicorn's HTTP/1.1 protocol with a deadline for a request's head, so a
  connection that opens and sends nothing, or drips its headers, is closed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time

MULTIPART_OVERHEAD = 64 * 1024
MIN_BODY_RATE_BPS = 1024.0  # a body slower than this on average (after the idle limit) is refused
HEADER_TIMEOUT_S = 10.0  # a request's line and headers must be in within this


class _BodyAborted(Exception):
    """Raised into the application when BodyLimit stops reading a request body."""


class BodyLimit:
    """ASGI middleware: a request body is limited while it streams in, not after.

    - ``Content-Length`` over ``max_bytes``: 413 at once, nothing read;
    - a body (chunked or lying about its length) that passes ``max_bytes``: reading stops
      there and the answer is 413;
    - no new bytes for ``idle_timeout_s`` while the body is incomplete: 408;
    - a body that drips (after ``idle_timeout_s``, on average fewer than ``min_rate_bps`` bytes a
      second so far): 408 — a byte every few seconds would otherwise hold a worker for hours.

    The error answer closes the connection, so the rest of the body is never read.
    """

    def __init__(self, app, max_bytes: int, idle_timeout_s: float = 30.0, limit_text: str = "",
                 min_rate_bps: float = MIN_BODY_RATE_BPS):
        self.app, self.max_bytes, self.idle_timeout_s = app, max_bytes, idle_timeout_s
        self.min_rate_bps = min_rate_bps
        self.limit_text = limit_text or f"{max_bytes / 1024 / 1024:g} MB"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await _send_error(send, 400, "invalid_request", "The Content-Length header is not a number.")
            if int(length) > self.max_bytes:
                return await _send_error(send, 413, "too_large", self._too_large(int(length), announced=True))
        state = {"read": 0, "done": False, "abort": None, "started": False, "t0": time.monotonic(), "why": ""}

        async def limited_receive():
            if state["done"]:  # the body is in: wait for a disconnect without a deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout_s)
            except asyncio.TimeoutError:
                state["abort"] = 408
                state["why"] = (f"The request body stalled for {self.idle_timeout_s:g} s after {state['read']} "
                                "bytes (or is shorter than its Content-Length).")
                raise _BodyAborted() from None
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                took = time.monotonic() - state["t0"]
                if not state["done"] and took > self.idle_timeout_s and state["read"] < self.min_rate_bps * took:
                    state["abort"] = 408
                    state["why"] = (f"The request body arrives too slowly: {state['read']} bytes in {took:.0f} s "
                                    f"(under {self.min_rate_bps:g} bytes/s).")
                    raise _BodyAborted()
                if state["read"] > self.max_bytes:
                    state["abort"] = 413
                    raise _BodyAborted()
            return message

        async def guarded_send(message):
            if state["abort"]:  # the application's own answer to the aborted body is dropped
                return
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["abort"]:
                raise
        if state["abort"] and not state["started"]:
            if state["abort"] == 413:
                await _send_error(send, 413, "too_large", self._too_large(state["read"], announced=False))
            else:
                await _send_error(send, 408, "timeout", state["why"])

    def _too_large(self, n: int, *, announced: bool) -> str:
        how = "announces" if announced else "passed"
        return (f"The upload is over the {self.limit_text} limit (the request {how} {n / 1024 / 1024:.1f} MB); "
                "send a shorter recording or ask the operator to raise SER_API_MAX_UPLOAD_MB.")


class KeyGate:
    """ASGI middleware, outermost: with an API key set, every request but ``/healthz`` must carry
    it in ``X-API-Key`` (compared in constant time) — checked on the headers alone, before a byte
    of the body is read, and before the upload limit's own checks. The interactive docs and the
    OpenAPI schema are behind it too. A refusal is 401 and closes the connection."""

    OPEN = frozenset({"/healthz"})

    def __init__(self, app, api_key: str | None):
        self.app, self.key = app, (api_key or "").encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.key or scope.get("path") in self.OPEN:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
        if not hmac.compare_digest(given, self.key):
            return await _send_error(send, 401, "unauthorized", "Missing or wrong X-API-Key header.")
        return await self.app(scope, receive, send)


async def _send_error(send, status: int, type_: str, message: str) -> None:
    body = json.dumps({"error": {"type": type_, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})



def _h11_protocol():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


class HeaderDeadline(_h11_protocol()):
    """uvicorn's h11 protocol with a deadline for each request's head: a connection that has
    not sent a complete request line and headers within ``HEADER_TIMEOUT_S`` of opening, or of
    the previous answer, is closed. (uvicorn closes an idle keep-alive connection only after a
    first answer, and has no limit on headers that arrive a byte at a time.)"""

    header_timeout_s = HEADER_TIMEOUT_S
    _head_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_head()

    def _arm_head(self) -> None:
        self._disarm_head()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's head is in: its body and answer have their own limits
            self._disarm_head()

    def handle_websocket_upgrade(self, event) -> None:
        self._disarm_head()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head()

    def connection_lost(self, exc) -> None:
        self._disarm_head()
        super().connection_lost(exc)
