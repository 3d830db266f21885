"""Celery entry points of the app: thin, by id, over services (the retry policy decides)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from syncplatform.retry import PlatformTask

from . import reconciliation
from .apply import event_apply, events_apply

logger = logging.getLogger(__name__)


@shared_task(name="erp_connectors.apply_event", base=PlatformTask)
def apply_event(event_id: int) -> None:
    """Apply an inbound event's pending items to the catalog. Idempotent."""
    event_apply(event_id=event_id)


@shared_task(name="erp_connectors.apply_events", base=PlatformTask)
def apply_events(event_ids: list[int]) -> None:
    """Apply several events (the relay's batch form of apply_event under load). Idempotent."""
    events_apply(event_ids=event_ids)


@shared_task(
    name=reconciliation.RECONCILE_TASK,
    base=PlatformTask,
    # A whole catalog takes longer than the default limits (settings.RECONCILE_TIME_LIMIT).
    soft_time_limit=settings.RECONCILE_TIME_LIMIT - 60,
    time_limit=settings.RECONCILE_TIME_LIMIT,
)
def reconcile_connector(connector_id: int, trigger: str = "schedule") -> None:
    """Reconcile one connector with its ERP (queue low). Safe to repeat: newer wins.

    A connector that cannot be reconciled, or one already being reconciled, is skipped:
    neither is a fault a retry could cure.
    """
    try:
        reconciliation.reconcile_connector(connector_id=connector_id, trigger=trigger)
    except (
        reconciliation.ReconciliationNotPossible,
        reconciliation.ReconciliationAlreadyRunning,
    ) as exc:
        logger.warning("reconciliation skipped: %s", exc)


@shared_task(name=reconciliation.RECONCILE_ALL_TASK, base=PlatformTask)
def reconcile_all() -> None:
    """Queue a reconciliation of every enabled connector with an ERP URL (nightly, by beat)."""
    queued = reconciliation.reconciliation_queue_all()
    logger.info("queued the reconciliation of %d connector(s)", queued)
