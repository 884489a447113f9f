"""Dashboard sign-in bound to the browser, not to Streamlit's session ID.

Streamlit resumes a session for any client that names its ID (the third websocket
subprotocol), and that ID appears in every upload URL — so in a proxy's access log. A sign-in
kept in ``st.session_state`` would belong to whoever names the ID. Here the password form
(pages/__init__.py) only earns a **one-time code** (60 s, single use); the browser trades it at
``POST /_ser/session`` for a random token in an **HttpOnly, SameSite=Strict cookie** and reloads,
which opens a new session. Every script run and fragment rerun then asks this registry who the
token of the *current* connection belongs to (``st.context.cookies`` is read from the websocket
that is connected now, so a resumed session sees the resumer's cookies, not the owner's).

The same registry guards what Streamlit itself serves without asking (``install``):
``/media/…`` (players, images, downloads) only to a signed-in browser whose own sessions hold
that file, uploads only into the uploader's own session, ``/_stcore/metrics`` only to an admin.
Tokens are kept as SHA-256 hashes, in memory (one server process; a restart signs everyone out).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

_LOG = logging.getLogger(__name__)

COOKIE = "ser_session"
ROUTE = "_ser/session"
CODE_TTL_S = 60.0
IDLE_S = 12 * 3600.0


def _h(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass
class _Grant:
    user: str
    admin: bool
    last_seen: float


class Sessions:
    """Who a browser's token belongs to, and which Streamlit sessions are whose. Thread-safe."""

    def __init__(self, *, idle_s: float = IDLE_S, code_ttl_s: float = CODE_TTL_S, clock=time.monotonic) -> None:
        self.idle_s, self.code_ttl_s, self.clock = idle_s, code_ttl_s, clock
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[str, bool, float]] = {}  # code hash -> (user, admin, issued)
        self._tokens: dict[str, _Grant] = {}  # token hash -> grant
        self._bound: dict[str, tuple[str, bool]] = {}  # Streamlit session id -> (user, admin)

    def issue_code(self, user: str, *, admin: bool = False) -> str:
        """A one-time code for ``user`` (after their password was checked)."""
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._codes = {k: v for k, v in self._codes.items() if now - v[2] < self.code_ttl_s}
            self._codes[_h(code)] = (user, admin, now)
        return code

    def redeem(self, code: str) -> str | None:
        """The cookie token for a valid, unused, unexpired ``code`` (None otherwise). Single use."""
        with self._lock:
            got = self._codes.pop(_h(code or ""), None)
            now = self.clock()
            if got is None or now - got[2] >= self.code_ttl_s:
                return None
            token = secrets.token_urlsafe(32)
            self._tokens[_h(token)] = _Grant(got[0], got[1], now)
            if len(self._tokens) > 100_000:  # bounded: forget the longest idle
                for k, _ in sorted(self._tokens.items(), key=lambda kv: kv[1].last_seen)[:50_000]:
                    del self._tokens[k]
        return token

    def _grant(self, token: str | None) -> _Grant | None:
        if not token:
            return None
        with self._lock:
            g = self._tokens.get(_h(token))
            now = self.clock()
            if g is None:
                return None
            if now - g.last_seen >= self.idle_s:
                del self._tokens[_h(token)]
                return None
            g.last_seen = now
            return g

    def user(self, token: str | None) -> str | None:
        """The user a cookie token stands for (None: no token, unknown, revoked or idle too long)."""
        g = self._grant(token)
        return g.user if g else None

    def is_admin(self, token: str | None) -> bool:
        g = self._grant(token)
        return bool(g and g.admin)

    def revoke(self, token: str | None) -> None:
        """Sign-out: the token authenticates nobody from now on."""
        with self._lock:
            self._tokens.pop(_h(token or ""), None)

    def bind(self, session_id: str, user: str | None, *, admin: bool = False) -> None:
        """Record that a Streamlit session now runs for ``user`` (None: for nobody)."""
        with self._lock:
            if user:
                self._bound.pop(session_id, None)  # re-inserted: the dict's order is last use
                self._bound[session_id] = (user, admin)
                if len(self._bound) > 20_000:  # sessions long gone: forget the least recently bound half
                    for sid in list(self._bound)[:10_000]:
                        del self._bound[sid]
            else:
                self._bound.pop(session_id, None)

    def sessions_of(self, user: str) -> set[str]:
        with self._lock:
            return {s for s, (u, _) in self._bound.items() if u == user}

    def owner(self, session_id: str) -> str | None:
        with self._lock:
            return self._bound.get(session_id, (None, False))[0]

    def session_is_admin(self, session_id: str) -> bool:
        with self._lock:
            return self._bound.get(session_id, (None, False))[1]


REGISTRY = Sessions()


def cookie_header(token: str, *, path: str, secure: bool, max_age_s: int = int(IDLE_S)) -> str:
    return (f"{COOKIE}={token}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))


def _cookie(scope) -> str | None:
    from starlette.requests import HTTPConnection

    return HTTPConnection(scope).cookies.get(COOKIE)


def _same_origin(request) -> bool:
    """A POST from this app's own page: its Origin (browsers send one with fetch) names this host."""
    from urllib.parse import urlsplit

    origin = request.headers.get("origin")
    return bool(origin) and urlsplit(origin).netloc == request.headers.get("host", "")


def _session_route(registry: Sessions, base: str):
    from starlette.responses import Response
    from starlette.routing import Route

    async def trade(request):
        if not _same_origin(request):
            return Response("cross-origin sign-in refused", status_code=403)
        body = (await request.body())[:200].decode("ascii", "replace").strip()
        token = registry.redeem(body)
        if token is None:
            return Response("sign-in code invalid or expired: sign in again", status_code=403)
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"
        return Response(status_code=204, headers={
            "set-cookie": cookie_header(token, path=base or "/", secure=secure), "cache-control": "no-store"})

    return Route(f"{base}/{ROUTE}", trade, methods=["POST"])


def _guard(app, allow):
    """Wrap a route's ASGI app: ``allow(scope)`` False answers 404 (as if nothing were there)."""
    from starlette.responses import PlainTextResponse

    async def guarded(scope, receive, send):
        if scope["type"] != "http" or allow(scope):
            await app(scope, receive, send)
        else:
            await PlainTextResponse("Not found", status_code=404)(scope, receive, send)

    guarded.ser_guarded = True
    return guarded


def _media_allowed(registry: Sessions, media_mgr):
    import contextlib
    import os

    def allow(scope) -> bool:
        user = registry.user(_cookie(scope))
        if not user:
            return False
        file_id = os.path.splitext(scope.get("path_params", {}).get("file_id", "").rsplit("/", 1)[-1])[0]
        held = getattr(media_mgr, "_files_by_session_and_coord", {})
        with getattr(media_mgr, "_lock", None) or contextlib.nullcontext():  # script threads add files meanwhile
            return any(file_id in held.get(sid, {}).values() for sid in registry.sessions_of(user))

    return allow


def _upload_allowed(registry: Sessions):
    def allow(scope) -> bool:
        user = registry.user(_cookie(scope))
        sid = scope.get("path_params", {}).get("session_id", "")
        return bool(user) and registry.owner(sid) == user

    return allow


def _admin_only(registry: Sessions):
    return lambda scope: registry.is_admin(_cookie(scope))


def _guard_clear_cache(registry: Sessions) -> None:
    """Streamlit clears every cache of the process (models, every user's results) when any
    websocket asks ("clear_cache", the menu's Clear cache); with sign-in, only an admin's
    session may."""
    from streamlit.runtime.app_session import AppSession

    original = AppSession._handle_clear_cache_request
    if getattr(original, "ser_guarded", False):
        return

    def handle(self) -> None:
        if registry.session_is_admin(self.id):
            original(self)
        else:
            _LOG.warning("clear_cache from session %s refused: not an admin's", self.id[:8])

    handle.ser_guarded = True
    AppSession._handle_clear_cache_request = handle


_installed: dict[str, bool] = {}
_install_lock = threading.Lock()


def install(registry: Sessions = REGISTRY) -> bool:
    """Add the cookie route to the running Streamlit server and put the guards on its media,
    upload and metrics routes. Once per process; True when in place (False: no Streamlit server
    in this process, e.g. under AppTest, or a Streamlit whose routes look different — then the
    dashboard must not offer sign-in)."""
    with _install_lock:
        if "ok" in _installed:  # once per process, either way (a failed search is not repeated per run)
            return _installed["ok"]
        import gc

        from starlette.applications import Starlette
        from starlette.routing import Route
        from streamlit import config
        from streamlit.runtime import Runtime

        if not Runtime.exists() or type(Runtime.instance()) is not Runtime:
            return False
        apps = [o for o in gc.get_objects() if isinstance(o, Starlette)]
        base = "/" + (config.get_option("server.baseUrlPath") or "").strip("/")
        base = "" if base == "/" else base
        for app in apps:
            routes = app.router.routes
            plain = [r for r in routes if isinstance(r, Route)]  # one Route per method, several per path
            media = [r for r in plain if r.path == f"{base}/media/{{file_id:path}}"]
            metrics = [r for r in plain if r.path.startswith(f"{base}/_stcore/metrics")]
            uploads = [r for r in plain if r.path.startswith(f"{base}/_stcore/upload_file/")]
            if not media or not metrics or not uploads:
                continue
            mgr = Runtime.instance().media_file_mgr
            for found, allow in ((media, _media_allowed(registry, mgr)), (metrics, _admin_only(registry)),
                                 (uploads, _upload_allowed(registry))):
                for r in found:
                    if not getattr(r.app, "ser_guarded", False):
                        r.app = _guard(r.app, allow)
            if not any(getattr(r, "path", "") == f"{base}/{ROUTE}" for r in routes):
                routes.insert(0, _session_route(registry, base))
            _guard_clear_cache(registry)
            _installed["ok"] = True
            return True
        _installed["ok"] = False
        _LOG.error("ser.serve.sessions: the Streamlit server's media, upload and metrics routes were not found; "
                   "sign-in is disabled (fails closed)")
        return False
