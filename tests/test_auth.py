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
