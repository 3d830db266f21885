"""Fixtures for import tests: uploaded files in a private media root, the outbox drained."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imports.tasks
import notifications.tasks
from imports.models import ImportRun
from imports.services import ImportCreated, import_create
from syncplatform.celery import app as celery_app
from syncplatform.outbox.models import OutboxMessage

HEADER = "sku,name,price,currency,quantity,warehouse,updated_at"
# The run status document's fields (CONTRACT §4), in the API and the admin's progress JSON.
CONTRACT_FIELDS = frozenset(
    {
        "id",
        "status",
        "total_rows",
        "processed_rows",
        "succeeded_rows",
        "failed_rows",
        "skipped_rows",
        "percent",
        "created_at",
        "started_at",
        "finished_at",
        "errors_url",
    }
)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """Uploaded files go to a directory of the test's own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def upload(media: Path) -> Callable[..., ImportCreated]:
    def create(text: str | bytes, **options: Any) -> ImportCreated:
        data = text.encode() if isinstance(text, str) else text
        options.setdefault("filename", "catalog.csv")
        return import_create(source=io.BytesIO(data), **options)

    return create


def drain_outbox(limit: int = 100_000) -> int:
    """Run every unpublished outbox message's task here, in order, until none is left.

    What a relay and workers would do, minus the broker: for tests of the import logic.
    """
    ran = run_outbox(limit)
    if OutboxMessage.objects.filter(published_at__isnull=True).exists():
        raise AssertionError(f"the outbox did not drain after {limit} messages")
    return ran


def run_outbox(count: int) -> int:
    """Run the next `count` unpublished outbox messages here, in order; return how many ran.

    For tests that stop a run part-way: `run_outbox(3)` after an upload runs the start
    message and the first two batches.
    """
    _registered = (imports.tasks, notifications.tasks)  # register the tasks by name
    ran = 0
    while ran < count:
        message = OutboxMessage.objects.filter(published_at__isnull=True).order_by("pk").first()
        if message is None:
            break
        OutboxMessage.objects.filter(pk=message.pk).update(published_at=message.created_at)
        celery_app.tasks[message.task_name](**message.kwargs)
        ran += 1
    return ran


def counters(run: ImportRun) -> tuple[int, int, int, int, int]:
    run.refresh_from_db()
    return (
        run.total_rows,
        run.processed_rows,
        run.succeeded_rows,
        run.failed_rows,
        run.skipped_rows,
    )
