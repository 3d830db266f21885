"""Celery entry points of the app: thin, by id, over services (the retry policy decides)."""

from __future__ import annotations

from celery import shared_task

from syncplatform.retry import PlatformTask

from .apply import event_apply, events_apply


@shared_task(name="erp_connectors.apply_event", base=PlatformTask)
def apply_event(event_id: int) -> None:
    """Apply an inbound event's pending items to the catalog. Idempotent."""
    event_apply(event_id=event_id)


@shared_task(name="erp_connectors.apply_events", base=PlatformTask)
def apply_events(event_ids: list[int]) -> None:
    """Apply several events (the relay's batch form of apply_event under load). Idempotent."""
    events_apply(event_ids=event_ids)
