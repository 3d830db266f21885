"""Writes for dead letters: record, requeue, discard."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from syncplatform.outbox.services import outbox_enqueue

from .models import DeadLetter


def dead_letter_record(
    *,
    task_name: str,
    task_id: str,
    queue: str,
    args: list,
    kwargs: dict,
    reason: str,
    error: str,
    traceback_text: str,
    attempts: int,
    history: list[dict],
    headers: dict,
) -> DeadLetter:
    """Record work that will not be retried. One row per failed task execution chain."""
    return DeadLetter.objects.create(
        task_name=task_name,
        task_id=task_id,
        queue=queue,
        args=args,
        kwargs=kwargs,
        reason=reason,
        error=error,
        traceback=traceback_text,
        attempts=attempts,
        history=history,
        headers={k: v for k, v in headers.items() if k != "retry_history"},
    )


@transaction.atomic
def dead_letter_requeue(*, dead_letter_id: int, by: str = "") -> bool:
    """Send an open dead letter's task again, with a fresh attempt count, via the outbox.

    Returns False when the letter was no longer open (a concurrent requeue or discard).
    """
    letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
    if letter.status != DeadLetter.Status.OPEN:
        return False
    if letter.args:
        # Tasks take keyword arguments only; positional ones cannot travel in the outbox.
        raise ValueError(f"dead letter {letter.pk} has positional args; requeue by hand")
    outbox_enqueue(
        task_name=letter.task_name,
        kwargs=letter.kwargs,
        dedup_key=f"deadletter:{letter.pk}",
        queue=letter.queue or None,
    )
    letter.status = DeadLetter.Status.REQUEUED
    letter.resolved_at = timezone.now()
    letter.resolved_by = by
    letter.save(update_fields=["status", "resolved_at", "resolved_by"])
    return True


def dead_letter_discard(*, dead_letter_id: int, by: str = "") -> bool:
    """Close an open dead letter without running it. Returns False if it was not open."""
    updated = DeadLetter.objects.filter(pk=dead_letter_id, status=DeadLetter.Status.OPEN).update(
        status=DeadLetter.Status.DISCARDED, resolved_at=timezone.now(), resolved_by=by
    )
    return updated == 1
