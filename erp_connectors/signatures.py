"""Standard Webhooks signature checks, with every live secret of a connector."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable, Mapping

from standardwebhooks.webhooks import Webhook

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
