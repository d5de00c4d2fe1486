"""Resume tokens: signed, scoped to one response, expiring.

Browsers' `EventSource` cannot send `x-api-key`, so `response.created` carries a token that the
events endpoint accepts as `?token=`. It grants reading that one response's events, nothing else.
Format: `base64url(payload).base64url(HMAC-SHA256(secret, payload))`, payload
`{"r": response_id, "c": chat_id, "e": expiry (unix seconds, to the millisecond)}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from kaiwa.protocol.json_limits import parse_json


@dataclass(frozen=True, slots=True)
class TokenClaims:
    response_id: str
    chat_id: int


class TokenSigner:
    def __init__(self, secret: str, *, ttl: float) -> None:
        self._key = secret.encode()
        self._ttl = ttl

    def sign(self, response_id: str, chat_id: int) -> str:
        # Not whole seconds: rounding down would expire a token up to a second early.
        claims = {"r": response_id, "c": chat_id, "e": round(time.time() + self._ttl, 3)}
        payload = _encode(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{_encode(self._mac(payload))}"

    def verify(self, token: str) -> TokenClaims | None:
        """The token's claims, or None when it is malformed, forged or expired.

        The signature is checked over the payload's text before the payload is decoded: a forged
        token costs one HMAC, and only what this server signed is ever parsed.
        """
        payload, dot, signature = token.partition(".")
        # Both halves are base64url: anything else cannot be a token this server made.
        if not dot or not token.isascii():
            return None
        try:
            given = _decode(signature)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            claims = parse_json(_decode(payload))
        except ValueError:
            return None
        if not isinstance(claims, dict):
            return None
        expiry = claims.get("e")
        if not isinstance(expiry, int | float) or expiry < time.time():
            return None
        response_id, chat_id = claims.get("r"), claims.get("c")
        if not isinstance(response_id, str) or not isinstance(chat_id, int):
            return None
        return TokenClaims(response_id=response_id, chat_id=chat_id)

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
