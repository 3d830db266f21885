"""Webhook secrets and API tokens: generate, check the form of, hash and compare them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a secret)
# The Standard Webhooks spec asks for secrets of 24 to 64 random bytes.
WEBHOOK_SECRET_MIN_BYTES = 24
WEBHOOK_SECRET_MAX_BYTES = 64
GENERATED_SECRET_BYTES = 32

API_TOKEN_PREFIX = "spt_"  # noqa: S105 (a format marker, not a secret)
# A token chosen by hand must still be hard to guess and fit in a Bearer header.
API_TOKEN_MIN_LENGTH = 20
API_TOKEN_MAX_LENGTH = 200
_API_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]+")


def webhook_secret_generate() -> str:
    """Return a new secret in Standard Webhooks form: whsec_ + base64 of random bytes."""
    raw = secrets.token_bytes(GENERATED_SECRET_BYTES)
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def webhook_secret_problem(secret: str) -> str | None:
    """Return why a given webhook secret is unusable, or None when it is fine."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return f"a webhook secret starts with {WEBHOOK_SECRET_PREFIX!r}"
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        # Unpadded base64 is accepted, as the standardwebhooks package does.
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "a webhook secret is whsec_ followed by base64"
    if not WEBHOOK_SECRET_MIN_BYTES <= len(raw) <= WEBHOOK_SECRET_MAX_BYTES:
        return (
            f"a webhook secret must encode {WEBHOOK_SECRET_MIN_BYTES} to "
            f"{WEBHOOK_SECRET_MAX_BYTES} bytes (got {len(raw)})"
        )
    return None


def api_token_generate() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def api_token_problem(token: str) -> str | None:
    """Return why a given API token is unusable, or None when it is fine."""
    if not API_TOKEN_MIN_LENGTH <= len(token) <= API_TOKEN_MAX_LENGTH:
        return f"an API token must be {API_TOKEN_MIN_LENGTH} to {API_TOKEN_MAX_LENGTH} characters"
    if not _API_TOKEN_RE.fullmatch(token):
        return "an API token may contain only letters, digits and . _ ~ + / = -"
    return None


def api_token_hash(token: str) -> str:
    """Return the SHA-256 hex digest stored in place of the token.

    A plain hash is enough: tokens are long random strings, not passwords, so there is
    nothing for a slow hash to protect against.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def api_token_matches(token: str, stored_hash: str) -> bool:
    """Compare in constant time, so response timing tells nothing about the stored hash."""
    return hmac.compare_digest(api_token_hash(token), stored_hash)
