"""Sign-in for a dashboard shared on a network, without an identity provider.

A small lab lists its users and their password hashes in ``.streamlit/secrets.toml``::

    [ser_auth]
    users = { alice = "pbkdf2_sha256$600000$...", bob = "pbkdf2_sha256$600000$..." }
    admins = ["alice"]          # they see everyone's History

``ser hash-password`` prints a hash for a password typed at its prompt. Hashes are
PBKDF2-SHA256 with a random salt (600 000 iterations); a password is checked in constant
time. A team with an identity provider uses Streamlit's own ``st.login`` instead
(``[auth]`` in the same file, see docs/privacy.md).

When the dashboard listens on anything but loopback and no sign-in is configured, it
refuses to show anything (:func:`sign_in_required`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ser.errors import ConfigError

ITERATIONS = 600_000
_SCHEME = "pbkdf2_sha256"


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (base64) for ``password``."""
    if not password:
        raise ConfigError("An empty password cannot be used.")
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"{_SCHEME}${iterations}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash from :func:`hash_password` (False for a malformed hash)."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMIES: dict[int, str] = {}


def _dummy_hash(iterations: int) -> str:
    """A hash nobody's password matches, made once per strength (the cost of checking against it
    is what counts)."""
    if iterations not in _DUMMIES:
        _DUMMIES[iterations] = hash_password(os.urandom(16).hex(), iterations=iterations)
    return _DUMMIES[iterations]


class Throttle:
    """Back-off after failed sign-ins, per user name and per client (address): the first
    ``free`` failures cost nothing, then each further attempt must wait ``base_s`` × 2^k
    seconds (k = failures past ``free``), at most ``max_s``, before its password is even
    checked — so guessing is slow and a refused attempt costs the server no hashing. A
    success clears the name's and the client's count. Unknown names count like known ones.
    In memory (one per server process); thread-safe."""

    def __init__(self, free: int = 3, base_s: float = 1.0, max_s: float = 300.0, clock=None) -> None:
        import threading
        import time

        self.free, self.base_s, self.max_s = free, base_s, max_s
        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._fails: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last one)

    def _keys(self, user: str, client: str | None) -> list[str]:
        return [f"user:{user.strip().lower()}"] + ([f"client:{client}"] if client else [])

    def wait_s(self, user: str, client: str | None = None) -> float:
        """Seconds before ``user`` from ``client`` may try again (0: now)."""
        now, wait = self.clock(), 0.0
        with self._lock:
            for k in self._keys(user, client):
                n, last = self._fails.get(k, (0, 0.0))
                if n >= self.free:
                    wait = max(wait, last + min(self.max_s, self.base_s * 2 ** (n - self.free)) - now)
        return max(0.0, wait)

    def failed(self, user: str, client: str | None = None) -> None:
        with self._lock:
            for k in self._keys(user, client):
                n, _ = self._fails.get(k, (0, 0.0))
                self._fails[k] = (n + 1, self.clock())
            if len(self._fails) > 100_000:  # bounded: forget the oldest
                for k, _ in sorted(self._fails.items(), key=lambda kv: kv[1][1])[:50_000]:
                    del self._fails[k]

    def succeeded(self, user: str, client: str | None = None) -> None:
        with self._lock:
            for k in self._keys(user, client):
                self._fails.pop(k, None)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    host = (host or "").strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthConfig:
    """Who may sign in: password users (``[ser_auth]``) and/or an OIDC provider (``[auth]``)."""

    users: dict[str, str] = field(default_factory=dict)  # name -> password hash
    admins: frozenset[str] = frozenset()
    oidc: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.users) or self.oidc

    def check(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s. An unknown name costs the same as a known one (its
        password is checked against a dummy hash of the same strength), so timing tells nobody
        which names exist."""
        stored = self.users.get(user.strip())
        if stored is None:
            verify_password(password, _dummy_hash(self._iterations()))
            return False
        return verify_password(password, stored)

    def _iterations(self) -> int:
        for h in self.users.values():  # the strength the configured hashes use
            try:
                return int(h.split("$")[1])
            except (IndexError, ValueError):
                continue
        return ITERATIONS


def auth_config(secrets: Mapping[str, Any]) -> AuthConfig:
    """The sign-in configuration in Streamlit secrets (an empty one when there is none)."""
    section = secrets.get("ser_auth") or {}
    users = {str(k): str(v) for k, v in dict(section.get("users") or {}).items()}
    bad = [u for u, h in users.items() if not h.startswith(_SCHEME + "$")]
    if bad:
        raise ConfigError(f"[ser_auth] users {', '.join(bad)} have no valid password hash; "
                          "make one with `ser hash-password`.")
    admins = frozenset(str(a) for a in (section.get("admins") or []))
    return AuthConfig(users=users, admins=admins, oidc="auth" in secrets)


def sign_in_required(address: str | None, cfg: AuthConfig) -> str | None:
    """None when the dashboard may run as it is; else why it must not (served to a network
    without any sign-in configured)."""
    if cfg.enabled or is_loopback(address or "127.0.0.1"):
        return None
    return (f"This dashboard listens on {address} (reachable from other machines) but no sign-in is configured, "
            "so it shows nothing. Add users to .streamlit/secrets.toml ([ser_auth] users, hashes from "
            "`ser hash-password`) or an OIDC provider ([auth], st.login), or serve it on 127.0.0.1 only.")
