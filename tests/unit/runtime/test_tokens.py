"""Resume tokens: what `TokenSigner.verify` accepts, and that a forged payload is never parsed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from kaiwa.runtime.tokens import TokenClaims, TokenSigner

SECRET = "s3cret"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: bytes, secret: str = SECRET) -> str:
    """A token over any payload, signed as the server signs."""
    encoded = b64(payload)
    mac = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{b64(mac)}"


def test_a_signed_token_verifies_to_its_claims() -> None:
    signer = TokenSigner(SECRET, ttl=60)
    assert signer.verify(signer.sign("r-1", 7)) == TokenClaims(response_id="r-1", chat_id=7)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = TokenSigner("other", ttl=60).sign("r-1", 7)
    assert TokenSigner(SECRET, ttl=60).verify(token) is None


def test_an_expired_token_is_refused() -> None:
    token = signed(f'{{"r": "r-1", "c": 7, "e": {time.time() - 1}}}'.encode())
    assert TokenSigner(SECRET, ttl=60).verify(token) is None


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000 + b"]" * 100_000, b'{"r":' * 5_000 + b"1" + b"}" * 5_000, b"\xff{"],
)
@pytest.mark.parametrize("signature", ["", "AAAA", "!!", b64(bytes(32))])
def test_a_forged_token_is_refused_before_its_payload_is_parsed(
    payload: bytes, signature: str
) -> None:
    assert TokenSigner(SECRET, ttl=60).verify(f"{b64(payload)}.{signature}") is None


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"r": "r-1", "c": 7, "e": NaN}',
        b'["r-1", 7]',
        b'{"r": 1, "c": "7", "e": 9999999999}',
    ],
)
def test_a_signed_but_malformed_payload_is_refused(payload: bytes) -> None:
    assert TokenSigner(SECRET, ttl=60).verify(signed(payload)) is None


@pytest.mark.parametrize("token", ["", ".", "no-dot", "ｔｏｋｅｎ.ｓｉｇ", "a.b.c", "\ud800.x"])
def test_a_token_that_is_not_two_base64url_parts_is_refused(token: str) -> None:
    assert TokenSigner(SECRET, ttl=60).verify(token) is None
