"""What waits in each Celery queue, read from Redis: for /metrics and the operator alerts."""

from __future__ import annotations

import json
import time
from typing import NamedTuple

from django.conf import settings

from syncplatform.celery import PUBLISHED_AT_HEADER
from syncplatform.celery import app as celery_app

# One short attempt: a caller checking on the broker must not hang on Kombu's own retries.
CONNECT_TIMEOUT = 2.0


class BrokerUnavailable(Exception):
    """The broker did not answer."""


class QueueState(NamedTuple):
    name: str
    depth: int
    # Seconds the oldest waiting message has waited since it was published; 0 when empty.
    oldest_age: float


def queue_states(*, now: float | None = None) -> list[QueueState]:
    """Return every queue's depth and oldest-message age. Raises BrokerUnavailable."""
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_TIMEOUT)
            client = conn.default_channel.client
            at = time.time() if now is None else now
            return [
                QueueState(queue, client.llen(queue), _oldest_age(client.lindex(queue, -1), at))
                for queue in settings.QUEUE_NAMES
            ]
    # Kombu, redis-py and the socket each raise their own kind; all mean "did not answer".
    except Exception as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _oldest_age(raw: bytes | None, now: float) -> float:
    """Kombu pushes on the left and pops on the right: the right end is the oldest."""
    if not raw:
        return 0.0
    try:
        published = json.loads(raw)["headers"].get(PUBLISHED_AT_HEADER)
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, now - float(published)) if published else 0.0
