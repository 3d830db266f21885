"""A reused PostgreSQL connection is checked before each request without a round trip.

The request boundary is driven as Django drives it (request_started closes unusable
connections and re-arms the health check; the first query runs the check).
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from catalog.selectors import product_get
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL backend's health check; SQLite has no server to lose")


@pytest.fixture
def observer() -> psycopg.Connection:
    """A second session, outside Django, that watches and ends the first."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as session:
        yield session


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def last_statement(observer: psycopg.Connection, pid: int) -> str | None:
    row = observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return row[0] if row else None


def next_request() -> None:
    """What Django does between two requests on a persistent connection."""
    connection.close_if_unusable_or_obsolete()


def test_a_connection_the_server_ended_is_replaced_and_the_request_succeeds(observer) -> None:
    # Given a persistent connection that the server then ends (a restart, a failover)
    old_pid = backend_pid()
    observer.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    wait_until(lambda: last_statement(observer, old_pid) is None, timeout=10, what="backend gone")

    # When the next request reads the storefront
    next_request()
    found = product_get(sku="NO-SUCH-SKU")

    # Then it is answered, on a new connection, instead of failing on the dead one
    assert found is None
    assert backend_pid() != old_pid


def test_a_healthy_connection_is_reused_without_a_select_1(observer) -> None:
    # Given a persistent connection whose last statement is known
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'last before the request' AS marker")
    # When the next request starts and runs its first query, from the observer's view
    next_request()
    connection.close_if_health_check_failed()

    # Then the server saw no health-check statement, and the same connection serves on
    assert "last before the request" in (last_statement(observer, pid) or "")
    assert backend_pid() == pid
