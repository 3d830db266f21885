"""The Celery app: configured from Django settings (CELERY_*), tasks found per app."""

import gc
import os
import time

from celery import Celery, Task
from celery.signals import (
    before_task_publish,
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)

from . import counters
from .priority import session_follows_niceness

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncplatform.settings")
# Every platform process imports this module: one started at a lower priority (make run's
# `nice`) gets it for its whole session too, or its niceness would count for nothing.
session_follows_niceness()

# Every message's publish time (unix seconds), read by syncplatform/queue_state.py: a
# queue's lag (/metrics, alerts) is the age of its oldest message.
PUBLISHED_AT_HEADER = "published_at"

app = Celery("syncplatform", include=["syncplatform.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_after_setup.connect
def _lower_bulk_work_priority(
    sender: str, instance: object, conf: object, **kwargs: object
) -> None:
    """Run a worker that consumes only `low` at a lower CPU priority (nice), pool included.

    Bulk work (import batches) may then use every idle core, yet yields the CPU to web
    requests and the `high` worker whenever they need it: the storefront stays fast during a
    big import. Set before the pool forks, so its processes inherit it.
    """
    from django.conf import settings

    queues = set(getattr(instance, "app", app).amqp.queues.consume_from or ())
    if queues and queues <= {"low"} and settings.WORKER_LOW_NICENESS > 0:
        os.nice(settings.WORKER_LOW_NICENESS)
        session_follows_niceness()


@worker_process_init.connect
def _freeze_startup_objects(**kwargs: object) -> None:
    """Leave the objects a pool process starts with out of every garbage collection.

    Django, Celery and the app make some 100,000 long-lived objects; without this, each full
    collection walks all of them again, and a task that makes many small objects (an import
    batch: several tuples per row) triggers many. Measured on an import batch: 8-10 ms of
    collection per 1,000 rows without, 2-4 ms with.
    """
    gc.freeze()


@task_prerun.connect
@task_postrun.connect
def _close_old_database_connections(**kwargs: object) -> None:
    """Drop connections past DB_CONN_MAX_AGE or broken by an error, keep the others.

    What Django does at the start and end of every request (see CELERY_DB_REUSE_MAX).
    """
    from django.db import close_old_connections

    close_old_connections()


# When each running task started, by task id (a pool process runs one task at a time, a
# thread pool several).
_started: dict[str, float] = {}


@task_prerun.connect
def _note_task_start(task_id: str, **kwargs: object) -> None:
    _started[task_id] = time.monotonic()


@task_postrun.connect
def _record_task_duration(
    task_id: str, task: Task, state: str | None = None, **kwargs: object
) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        counters.TASK_DURATION.observe(
            time.monotonic() - started, task.name, (state or "unknown").lower()
        )


@worker_process_shutdown.connect
def _flush_counters(**kwargs: object) -> None:
    """A pool process leaves with os._exit: no timer or atexit hook would run."""
    counters.flush()


@before_task_publish.connect(dispatch_uid="stamp_published_at")
def _stamp_published_at(headers: dict, **kwargs: object) -> None:
    """Date every message, whoever sends it (outbox relay, beat, a retry).

    Without it a message from beat at the head of a stuck queue would show age 0 and hide
    the lag of all the work behind it, and a retry, which copies its first message's headers,
    would show the first message's age.
    """
    headers[PUBLISHED_AT_HEADER] = time.time()
