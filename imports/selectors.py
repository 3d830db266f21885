"""Reads for the import API: who a token belongs to, which runs it may see, a run's row errors."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from erp_connectors.credentials import api_token_hash
from erp_connectors.models import Connector

from .models import ImportRowError, ImportRun
from .parsing import RowError

# Rows fetched per round trip while the error report streams: bounded memory, few queries.
ERROR_REPORT_CHUNK_ROWS = 2000


def connector_ids_for_token(*, token: str) -> list[int]:
    """Return the ids of the enabled connectors whose API token this is (normally one).

    Looked up by the token's SHA-256, so the comparison reveals nothing about stored tokens.
    """
    if not token:
        return []
    return list(
        Connector.objects.filter(api_token_hash=api_token_hash(token), enabled=True).values_list(
            "pk", flat=True
        )
    )


def run_get(*, run_id: int, connector_ids: Collection[int] | None = None) -> ImportRun | None:
    """Return the run, or None if it does not exist or belongs to none of `connector_ids`.

    `connector_ids=None` means any run (staff); runs uploaded by staff without a connector
    therefore stay invisible to every token.
    """
    runs = ImportRun.objects.select_related("connector")
    if connector_ids is not None:
        runs = runs.filter(connector_id__in=connector_ids)
    return runs.filter(pk=run_id).first()


def run_row_errors(*, run_id: int) -> Iterator[RowError]:
    """Yield the run's row errors in line order, fetched in chunks (for any number of rows)."""
    rows = (
        ImportRowError.objects.filter(run_id=run_id)
        .order_by("line")
        .values_list("line", "sku", "column", "code", "message")
    )
    for line, sku, column, code, message in rows.iterator(chunk_size=ERROR_REPORT_CHUNK_ROWS):
        yield RowError(line, sku, column, code, message)
