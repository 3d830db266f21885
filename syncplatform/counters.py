"""Counters and histograms that every platform process adds to, totalled in Redis.

/metrics must give the same totals on any web instance, whichever process or host did the
work. prometheus-client's multiprocess mode shares files between the processes of one host
only, so each process keeps its increments in memory and adds them into one Redis hash at
most once a FLUSH_SECONDS (a timer thread, off the request path); /metrics reads the hash.
A process that dies loses at most its last unflushed increments, as any process-local
Prometheus counter would; a Redis restart resets the totals, which Prometheus's rate() and
increase() treat as a counter reset.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import product

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

REDIS_KEY = "syncplatform:metrics"
FLUSH_SECONDS = 1.0
# Joins a metric's name, label values and sample suffix into one hash field. Label values
# are connector slugs, task names, status codes and outcomes: none contains it.
_SEP = "\x1f"

_lock = threading.Lock()
_pending: defaultdict[str, float] = defaultdict(float)
_timer: threading.Timer | None = None
_client: redis.Redis | None = None


class Counter:
    """A monotonic count with fixed label names; `inc` costs a dictionary update."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        known: Iterable[tuple[str, ...]] = (),
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        # Label values shown as 0 before their first increment, so that an alert rule on
        # increase() sees the first failure too (a series that appears has no increase).
        self.known = tuple(known)
        REGISTRY.append(self)

    def inc(self, *values: str, amount: float = 1) -> None:
        _add({_field(self.name, values): amount})


class Histogram:
    """A distribution of durations in seconds, with Prometheus's cumulative buckets."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        buckets: tuple[float, ...],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.buckets = (*sorted(buckets), math.inf)
        REGISTRY.append(self)

    def observe(self, seconds: float, *values: str) -> None:
        # Only the first bucket that holds the value is counted here; the reader adds them
        # up into Prometheus's cumulative buckets.
        bucket = next(bound for bound in self.buckets if seconds <= bound)
        _add(
            {
                _field(self.name, (*values, bound_text(bucket))): 1,
                _field(self.name + "_sum", values): seconds,
                _field(self.name + "_count", values): 1,
            }
        )


REGISTRY: list[Counter | Histogram] = []


def totals() -> dict[str, dict[tuple[str, ...], float]]:
    """Every total in Redis, by sample name and label values (raises redis errors)."""
    flush()  # this process's own increments count too
    raw = _redis().hgetall(REDIS_KEY)
    samples: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
    for field, value in raw.items():
        name, *values = field.decode().split(_SEP)
        samples[name][tuple(values)] = float(value)
    return samples


def flush() -> None:
    """Add this process's pending increments into Redis; keep them if Redis is away."""
    global _timer
    with _lock:
        taken = dict(_pending)
        _pending.clear()
        _timer = None
    if not taken:
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for field, amount in taken.items():
            if float(amount).is_integer():
                pipe.hincrby(REDIS_KEY, field, int(amount))
            else:
                pipe.hincrbyfloat(REDIS_KEY, field, amount)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("could not add %d metric increments to Redis: %r", len(taken), exc)
        # Not added (or not all: then some count twice, the lesser harm): try again later.
        _add(taken)


def _add(increments: Mapping[str, float]) -> None:
    global _timer
    with _lock:
        for field, amount in increments.items():
            _pending[field] += amount
        if _timer is None:
            _timer = threading.Timer(FLUSH_SECONDS, flush)
            _timer.daemon = True
            _timer.start()


def _field(name: str, values: Iterable[str]) -> str:
    return _SEP.join((name, *values))


def bound_text(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=5
        )
    return _client


def _after_fork_in_child() -> None:
    """A forked child (a pool process, a web worker) starts with nothing of its parent's:
    the parent adds its own increments, and a copied timer thread or socket is not usable."""
    global _lock, _timer, _client
    _lock = threading.Lock()
    _pending.clear()
    _timer = None
    _client = None


os.register_at_fork(after_in_child=_after_fork_in_child)

# --- The platform's counters (CONTRACT §6) ----------------------------------------------

WEBHOOK_ANSWERS = Counter(
    "syncplatform_webhook_requests",
    "Webhook deliveries answered, by connector (empty when none was found) and status code",
    ("connector", "code"),
)
_EVENT_TYPES = ("stock.updated", "price.updated")
EVENTS_COMPLETED = Counter(
    "syncplatform_events_completed",
    "Apply attempts that completed an inbound event, by event type and the event's outcome",
    ("type", "outcome"),
    known=product(_EVENT_TYPES, ("applied", "partially_applied", "failed")),
)
EVENT_ITEMS = Counter(
    "syncplatform_event_items",
    "Items of inbound events by the outcome of the attempt that applied them",
    ("type", "outcome"),
    known=product(_EVENT_TYPES, ("applied", "stale", "failed")),
)
TASK_DURATION = Histogram(
    "syncplatform_task_duration_seconds",
    "How long Celery tasks ran, by task name and final state of the run",
    ("task", "state"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
