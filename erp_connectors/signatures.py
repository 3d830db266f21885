"""Standard Webhooks signature checks, with every live secret of a connector."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping

from standardwebhooks.webhooks import Webhook, hmac_data

logger = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# One entry of the space-separated signature list: "<version>,<base64>".
_SIGNATURE_ENTRY = re.compile(r"v[0-9a-z]+,[A-Za-z0-9+/]+={0,2}")


def signature_verify(*, secrets: Iterable[str], body: str, headers: Mapping[str, str]) -> bool:
    """Return True when a signature in the headers was made with one of the secrets.

    The package also checks that webhook-timestamp lies within ±5 minutes of now. It raises
    assorted exceptions on hostile input (ValueError for a signature without a comma,
    binascii.Error for bad base64, its own WebhookVerificationError ...); all of them mean
    "not verified", never a server error, so every exception is a failed check here.
    """
    signed = {name: headers.get(name) or "" for name in SIGNATURE_HEADERS}
    signed["webhook-signature"] = _well_formed_entries(signed["webhook-signature"])
    for secret in secrets:
        try:
            Webhook(secret).verify(body, signed, json_parse=False)
        except Exception as exc:  # any failure to verify is "not signed with this secret"
            logger.debug("webhook signature rejected: %s: %s", type(exc).__name__, exc)
            continue
        return True
    return False


# The package's window around now for webhook-timestamp, for signature_verify_bytes.
_TIMESTAMP_TOLERANCE_SECONDS = 5 * 60


def signature_verify_bytes(
    *, secrets: Iterable[str], body: bytes, headers: Mapping[str, str]
) -> bool:
    """signature_verify for a body that is not UTF-8.

    The package's verify() decodes the body before signing it, so it cannot check one that
    is not text; the signature covers the raw bytes all the same. This is the package's check
    (HMAC-SHA256 of "{id}.{timestamp}.{body}" with its hmac_data, the same v1 entries, the
    same ±5 minute window) over the bytes. Only bodies that are refused anyway come here.
    """
    webhook_id = headers.get("webhook-id") or ""
    try:
        sent_at = float(headers.get("webhook-timestamp") or "")
        # The package signs the timestamp in whole seconds, whatever the header's form.
        prefix = f"{webhook_id}.{math.floor(sent_at)}.".encode()
    except (ValueError, OverflowError, UnicodeEncodeError):  # NaN, infinity, a lone surrogate
        return False
    if not webhook_id or abs(time.time() - sent_at) > _TIMESTAMP_TOLERANCE_SECONDS:
        return False
    offered = [
        base64.b64decode(entry.partition(",")[2])
        for entry in _well_formed_entries(headers.get("webhook-signature") or "").split()
        if entry.startswith("v1,")
    ]
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")  # as the package reads it
        expected = hmac_data(key, prefix + body)
        if any(hmac.compare_digest(expected, signature) for signature in offered):
            return True
    return False


def _well_formed_entries(header: str) -> str:
    """Keep the well-formed entries of a signature list, single-space separated.

    The package gives up on the whole list at the first entry it cannot split, so a stray
    or future-format entry would hide a valid signature after it; the spec says a receiver
    ignores signatures it does not understand.
    """
    return " ".join(entry for entry in header.split() if _well_formed(entry))


def _well_formed(entry: str) -> bool:
    if not _SIGNATURE_ENTRY.fullmatch(entry):
        return False
    try:
        base64.b64decode(entry.partition(",")[2], validate=True)
    except binascii.Error:
        return False
    return True
