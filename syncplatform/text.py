"""Text taken from outside (a CSV cell, an ERP's item) that is about to be stored."""

from __future__ import annotations

import re

# What PostgreSQL cannot store in text or jsonb: NUL, and (in jsonb) lone surrogates.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """Return `text` with what PostgreSQL refuses shown as U+FFFD, the replacement character.

    Such text is stored when it is reported (a row error, a failed item, a run's error): one
    NUL would otherwise fail the whole transaction, not just the row or item it came with.
    """
    return _UNSTORABLE.sub("\ufffd", text)
