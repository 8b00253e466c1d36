"""Standard Webhooks signatures: secrets (``whsec_`` + base64) and the ``webhook-*`` headers.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
``v1,`` + base64 of its HMAC-SHA256 under the secret's bytes. A receiver checks it with any
Standard Webhooks library (or those few lines), and rejects timestamps far from its clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from culm.errors import InvalidInput

PREFIX = "whsec_"
MIN_BYTES = 24
MAX_BYTES = 64


def new_secret() -> str:
    """A fresh secret of 32 random bytes, as ``whsec_<base64>``."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """``secret`` if it is ``whsec_`` + base64 of 24 to 64 bytes; ``InvalidInput`` otherwise."""
    if not secret.startswith(PREFIX):
        raise InvalidInput("a webhook secret looks like whsec_<base64 of 24 to 64 bytes>")
    key = _key(secret)
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise InvalidInput(
            f"a webhook secret must hold {MIN_BYTES} to {MAX_BYTES} bytes, not {len(key)}"
        )
    return secret


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the part of a webhook secret after whsec_ is not base64") from None


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for this message."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
