"""The retry policy on a real worker: transient faults back off and give up into a dead letter,
permanent ones are not retried, and an operator's requeue runs the work again.

Test workers run with base 0.2 s, cap 1 s, 4 attempts (tests/conftest.py FAST_RETRY_ENV).
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.db import transaction
from django_celery_results.models import TaskResult

from syncplatform.deadletters.models import DeadLetter
from syncplatform.deadletters.services import dead_letter_discard, dead_letter_requeue
from syncplatform.outbox.services import outbox_enqueue
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4
BASE, CAP = 0.2, 1.0


def enqueue(task_name: str, **kwargs) -> str:
    with transaction.atomic():
        return outbox_enqueue(task_name=task_name, kwargs=kwargs, queue="default").task_id


def attempt_times(broker, key: str) -> list[float]:
    return [float(t) for t in broker.lrange(key, 0, -1)]


def dead_letter_for(task_id: str) -> DeadLetter | None:
    return DeadLetter.objects.filter(task_id=task_id).first()


def test_transient_failures_back_off_with_jitter_then_dead_letter(broker, start_worker):
    # Given a task whose dependency never recovers
    start_worker("default")
    key = f"attempts:{uuid.uuid4()}"
    task_id = enqueue("tests.fail_transiently", key=key, failures=99)
    # When the retry policy has run its course
    letter = wait_until(lambda: dead_letter_for(task_id), timeout=60, what="dead letter")
    # Then it ran exactly the attempt cap, and was dead-lettered as exhausted
    times = attempt_times(broker, key)
    assert len(times) == MAX_ATTEMPTS
    assert letter.attempts == MAX_ATTEMPTS
    assert letter.reason == DeadLetter.Reason.EXHAUSTED
    assert letter.status == DeadLetter.Status.OPEN
    assert "flaky dependency, attempt 4" in letter.error
    assert letter.kwargs == {"key": key, "failures": 99}
    assert letter.queue == "default"
    # And each retry waited a jittered countdown inside a window that doubled each time
    countdowns = [entry["countdown"] for entry in letter.history[:-1]]
    windows = [min(CAP, BASE * 2**n) for n in range(len(countdowns))]
    assert windows == sorted(windows)
    assert windows[0] < windows[-1]
    assert all(0 <= c <= w for c, w in zip(countdowns, windows, strict=True))
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= c - 0.05 for gap, c in zip(gaps, countdowns, strict=True))
    assert [entry["attempt"] for entry in letter.history] == [1, 2, 3, 4]


def test_transient_failure_that_recovers_needs_no_operator(broker, start_worker):
    start_worker("default")
    key = f"attempts:{uuid.uuid4()}"
    # Given a dependency that fails twice and then answers
    enqueue("tests.fail_transiently", key=key, failures=2)
    # Then the third attempt succeeds and nothing is dead-lettered
    wait_until(lambda: len(attempt_times(broker, key)) == 3, timeout=30, what="3 attempts")
    probe = enqueue("platform.ping_queue", token="after")
    wait_until(lambda: TaskResult.objects.filter(task_id=probe).exists(), timeout=30)
    assert len(attempt_times(broker, key)) == 3
    assert not DeadLetter.objects.exists()


def test_permanent_failure_is_dead_lettered_without_retry(broker, start_worker):
    start_worker("default")
    key = f"attempts:{uuid.uuid4()}"
    task_id = enqueue("tests.fail_permanently", key=key)
    letter = wait_until(lambda: dead_letter_for(task_id), timeout=30, what="dead letter")
    assert letter.reason == DeadLetter.Reason.PERMANENT
    assert letter.attempts == 1
    assert "PermanentError" in letter.error
    assert "Traceback" in letter.traceback
    # A later task on the same worker has run, and still there was only one attempt
    probe = enqueue("platform.ping_queue", token="after")
    wait_until(lambda: TaskResult.objects.filter(task_id=probe).exists(), timeout=30)
    assert len(attempt_times(broker, key)) == 1


def test_requeued_dead_letter_runs_again_and_discard_closes_it(broker, start_worker):
    start_worker("default")
    key = f"attempts:{uuid.uuid4()}"
    # Given work dead-lettered after 4 failures, whose dependency then recovers
    task_id = enqueue("tests.fail_transiently", key=key, failures=MAX_ATTEMPTS)
    letter = wait_until(lambda: dead_letter_for(task_id), timeout=60, what="dead letter")
    # When an operator requeues it
    assert dead_letter_requeue(dead_letter_id=letter.pk, by="operator")
    # Then it runs once more and succeeds; the letter is closed and cannot be requeued twice
    wait_until(lambda: len(attempt_times(broker, key)) == MAX_ATTEMPTS + 1, timeout=30)
    letter.refresh_from_db()
    assert (letter.status, letter.resolved_by) == (DeadLetter.Status.REQUEUED, "operator")
    assert not dead_letter_requeue(dead_letter_id=letter.pk)
    assert not dead_letter_discard(dead_letter_id=letter.pk)
    assert DeadLetter.objects.count() == 1


def test_task_killed_at_the_hard_time_limit_is_dead_lettered(broker, start_worker):
    # Given a task that hangs past its 1 s hard limit
    worker = start_worker("default")
    key = f"attempts:{uuid.uuid4()}"
    task_id = enqueue("tests.hang", key=key)
    # Then the worker kills it, and the work is kept as a dead letter, not dropped
    letter = wait_until(lambda: dead_letter_for(task_id), timeout=30, what="dead letter")
    assert letter.reason == DeadLetter.Reason.TIMEOUT
    assert letter.kwargs == {"key": key}
    assert "Hard time limit" in worker.log()
    # And the worker goes on with other work
    probe = enqueue("platform.ping_queue", token="after")
    wait_until(lambda: TaskResult.objects.filter(task_id=probe).exists(), timeout=30)
