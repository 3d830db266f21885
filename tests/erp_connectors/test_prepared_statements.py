"""The hottest statements are prepared once per PostgreSQL connection and then reused."""

from __future__ import annotations

import pytest
from django.db import connection

from catalog.selectors import product_get
from erp_connectors.selectors import connector_get_enabled
from erp_connectors.services import ConnectorCredentials

pytestmark = [pytest.mark.django_db]


def prepared_runs(table: str) -> list[int]:
    """How often each statement prepared on this connection that names `table` has run."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            [f'%"{table}"%'],
        )
        return [runs for (runs,) in cursor.fetchall()]


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature; SQLite runs them as is")


def test_the_connector_lookup_is_prepared_once_and_run_again_and_again(
    connector: ConnectorCredentials,
) -> None:
    # When every webhook's first statement, the connector lookup, runs three times
    for _ in range(3):
        assert connector_get_enabled(slug=connector.connector.slug) == connector.connector

    # Then the server holds one prepared statement for it, run three times
    assert prepared_runs("erp_connectors_connector") == [3]


def test_with_prepared_statements_off_nothing_is_prepared_and_reads_still_work(
    connector: ConnectorCredentials, settings
) -> None:
    # Given an operator behind a pooler that cannot keep prepared statements
    settings.DB_PREPARED_STATEMENTS = False

    # When the connector lookup and a storefront read run
    assert connector_get_enabled(slug=connector.connector.slug) == connector.connector
    assert product_get(sku="NO-SUCH-SKU") is None

    # Then nothing was prepared
    assert prepared_runs("erp_connectors_connector") == []
    assert prepared_runs("catalog_product") == []
