"""Tasks that fail on purpose, loaded only by test workers (`--include tests.support.tasks`).

Each records its attempts in Redis under the key it is given, so a test can read how often
and when it ran without any shared memory with the worker.
"""

from __future__ import annotations

import threading
import time

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

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
