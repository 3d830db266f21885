"""Tasks that fail on purpose, loaded only by test workers (`--include tests.support.tasks`).

Each records its attempts in Redis under the key it is given, so a test can read how often
and when it ran without any shared memory with the worker.
"""

from __future__ import annotations

import os
import threading
import time

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.backends.signals import connection_created

from syncplatform.retry import PermanentError, PlatformTask, TransientError


def _record_attempt(key: str) -> int:
    client = redis.Redis.from_url(settings.REDIS_URL)
    return client.rpush(key, repr(time.time()))


@shared_task(name="tests.fail_transiently", base=PlatformTask)
def fail_transiently(key: str, failures: int) -> None:
    """Fail with a transient error on the first `failures` attempts, then succeed."""
    attempt = _record_attempt(key)
    if attempt <= failures:
        raise TransientError(f"flaky dependency, attempt {attempt}")


@shared_task(name="tests.fail_permanently", base=PlatformTask)
def fail_permanently(key: str) -> None:
    _record_attempt(key)
    raise PermanentError("this payload can never be applied")


@shared_task(name="tests.hang", base=PlatformTask, soft_time_limit=0.5, time_limit=1.5)
def hang(key: str) -> None:
    """Hang on a dependency and ignore the soft time limit, as stuck C code would."""
    _record_attempt(key)
    never = threading.Event()
    try:
        never.wait(60)
    except SoftTimeLimitExceeded:
        never.wait(60)


# Database connections this process opened (Django's connection_created signal).
_connections_opened = 0


def _count_connection(**kwargs: object) -> None:
    global _connections_opened
    _connections_opened += 1


connection_created.connect(_count_connection)


@shared_task(name="tests.query_database", base=PlatformTask)
def query_database(key: str) -> None:
    """Run a query; record this pool process and how many connections it has opened so far."""
    from catalog.models import Product

    Product.objects.exists()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.rpush(key, f"{os.getpid()}:{_connections_opened}")


@shared_task(name="tests.record_run", base=PlatformTask)
def record_run(key: str) -> None:
    """Record that a periodic task ran, and when (beat tests)."""
    _record_attempt(key)
