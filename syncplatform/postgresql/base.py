"""Django's PostgreSQL backend; a reused connection is checked without a round trip.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request
(and, in our workers, of every task) on a reused connection: a second round trip for a
storefront read or a webhook, and under load a second wait for a busy server. What the check
is for, a connection the server has ended (a restart, a failover, an idle timeout,
pg_terminate_backend), shows without asking: the server sends its FATAL error and closes the
socket, so the idle connection has input waiting. Only then is Django's own check run, and
it closes the connection. Django has no hook for this short of the backend class.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and _idle_and_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def _idle_and_quiet(connection: base.Database.Connection) -> bool:
    """True if the connection is open, idle, and nothing has arrived on it unasked."""
    if connection.closed or connection.broken:
        return False
    pgconn = connection.pgconn
    if pgconn.transaction_status != base.Database.pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError, base.Database.OperationalError):
        return False
    return not readable
