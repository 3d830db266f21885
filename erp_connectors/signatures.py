"""Standard Webhooks signature checks, with every live secret of a connector."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from standardwebhooks.webhooks import Webhook

logger = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def signature_verify(*, secrets: Iterable[str], body: str, headers: Mapping[str, str]) -> bool:
    """Return True when a signature in the headers was made with one of the secrets.

    The package also checks that webhook-timestamp lies within ±5 minutes of now. It raises
    assorted exceptions on hostile input (ValueError for a signature without a comma,
    binascii.Error for bad base64, its own WebhookVerificationError ...); all of them mean
    "not verified", never a server error, so every exception is a failed check here.
    """
    signed = {name: headers.get(name) or "" for name in SIGNATURE_HEADERS}
    for secret in secrets:
        try:
            Webhook(secret).verify(body, signed, json_parse=False)
        except Exception as exc:  # any failure to verify is "not signed with this secret"
            logger.debug("webhook signature rejected: %s: %s", type(exc).__name__, exc)
            continue
        return True
    return False
