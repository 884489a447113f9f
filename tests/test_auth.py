"""Password sign-in for a shared dashboard: hashes, configuration, when sign-in is required."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ser.serve.auth import (
    AuthConfig,
    auth_config,
    hash_password,
    is_loopback,
    sign_in_required,
    verify_password,
)
from ser.errors import ConfigError


def test_hash_and_verify():
    h = hash_password("correct horse", iterations=1000)
    assert h.startswith("pbkdf2_sha256$1000$") and verify_password("correct horse", h)
    assert not verify_password("correct hors", h) and not verify_password("", h)
    assert hash_password("x", iterations=1000) != hash_password("x", iterations=1000)  # salted
    assert not verify_password("x", "md5$abc") and not verify_password("x", "garbage")
    with pytest.raises(ConfigError):
        hash_password("")


def test_config_from_secrets():
    cfg = auth_config({"ser_auth": {"users": {"alice": hash_password("a", iterations=1000)}, "admins": ["alice"]}})
    assert cfg.enabled and cfg.admins == {"alice"} and not cfg.oidc
    assert cfg.check("alice", "a") and not cfg.check("alice", "b") and not cfg.check("mallory", "a")
    assert not auth_config({}).enabled and auth_config({"auth": {"redirect_uri": "x"}}).oidc
    with pytest.raises(ConfigError, match="hash-password"):
        auth_config({"ser_auth": {"users": {"bob": "plaintext"}}})


def test_sign_in_required_only_off_loopback_without_configuration():
    users = AuthConfig(users={"a": hash_password("a", iterations=1000)})
    assert sign_in_required("127.0.0.1", AuthConfig()) is None
    assert sign_in_required(None, AuthConfig()) is None
    assert sign_in_required("0.0.0.0", users) is None
    msg = sign_in_required("0.0.0.0", AuthConfig())
    assert msg and "hash-password" in msg and is_loopback("::1")


def test_hash_password_command_reads_stdin():
    r = subprocess.run([sys.executable, "-m", "ser.cli", "hash-password"], input="s3cret\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and verify_password("s3cret", r.stdout.strip())


def test_sign_in_codes_are_single_use_and_tokens_expire_and_revoke():
    """ser.serve.sessions: a code trades once, within its 60 s; a token names its user until it is
    revoked or idle for the limit; only the hash of either is kept."""
    from ser.serve.sessions import Sessions

    now = [1000.0]
    reg = Sessions(idle_s=100.0, code_ttl_s=60.0, clock=lambda: now[0])
    code = reg.issue_code("alice", admin=True)
    token = reg.redeem(code)
    assert token and reg.redeem(code) is None  # single use
    assert reg.user(token) == "alice" and reg.is_admin(token)
    assert code not in repr(reg.__dict__) and token not in repr(reg.__dict__)  # hashes only
    late = reg.issue_code("bob")
    now[0] += 61
    assert reg.redeem(late) is None  # expired
    now[0] += 90  # alice's token was last seen 151 s ago
    assert reg.user(token) is None
    token = reg.redeem(reg.issue_code("alice"))
    reg.revoke(token)
    assert reg.user(token) is None and reg.user(None) is None and reg.user("forged") is None
    reg.bind("s1", "alice")
    reg.bind("s2", "bob", admin=True)
    assert reg.owner("s1") == "alice" and reg.sessions_of("bob") == {"s2"} and reg.session_is_admin("s2")
    reg.bind("s1", None)
    assert reg.owner("s1") is None and not reg.session_is_admin("s1")
