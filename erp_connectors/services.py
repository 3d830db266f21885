"""Writes for connectors and inbound events on the request side.

Applying an event's items is worker-side and lives in apply.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from syncplatform.outbox.services import outbox_enqueue, outbox_enqueue_with_row

from .credentials import (
    api_token_generate,
    api_token_hash,
    api_token_problem,
    webhook_secret_generate,
    webhook_secret_problem,
)
from .models import Connector, InboundEvent
from .schemas import WebhookPayload
from .selectors import connector_unchanged

APPLY_TASK = "erp_connectors.apply_event"


# -- connectors ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ConnectorCredentials:
    """What to tell the operator once: the secrets as they are now.

    `api_token` is None when the token was left unchanged: only its hash is stored.
    """

    connector: Connector
    created: bool
    webhook_secret: str
    api_token: str | None


@transaction.atomic
def connector_save(
    *,
    slug: str,
    name: str | None = None,
    webhook_secret: str | None = None,
    rotate_webhook_secret: bool = False,
    api_token: str | None = None,
    new_api_token: bool = False,
    erp_url: str | None = None,
    erp_token: str | None = None,
    notify_email: str | None = None,
) -> ConnectorCredentials:
    """Create connector `slug` or update the fields given; None leaves a field as it is.

    A new webhook secret (given, or generated with rotate_webhook_secret) moves the current
    one to webhook_secret_previous, so signatures made with either keep working while the
    ERP switches over. Raises ValueError for an unusable secret or token.
    """
    if webhook_secret is not None and (problem := webhook_secret_problem(webhook_secret)):
        raise ValueError(problem)
    if api_token is not None and (problem := api_token_problem(api_token)):
        raise ValueError(problem)

    connector = Connector.objects.select_for_update().filter(slug=slug).first()
    created = connector is None
    if connector is None:
        connector = Connector(
            slug=slug,
            name=name or slug,
            webhook_secret=webhook_secret or webhook_secret_generate(),
        )
        api_token = api_token or api_token_generate()
    else:
        if name is not None:
            connector.name = name
        if webhook_secret is None and rotate_webhook_secret:
            webhook_secret = webhook_secret_generate()
        if webhook_secret is not None and webhook_secret != connector.webhook_secret:
            _rotate(connector, webhook_secret)
        if api_token is None and new_api_token:
            api_token = api_token_generate()

    if api_token is not None:
        connector.api_token_hash = api_token_hash(api_token)
    if erp_url is not None:
        connector.erp_url = erp_url
    if erp_token is not None:
        connector.erp_token = erp_token
    if notify_email is not None:
        connector.notify_email = notify_email
    connector.full_clean()
    connector.save()
    return ConnectorCredentials(connector, created, connector.webhook_secret, api_token)


@transaction.atomic
def connector_rotate_webhook_secret(*, connector_id: int) -> str:
    """Generate a new webhook secret, keep the current one live as the previous; return it.

    A second rotation drops the oldest secret: at most two are ever accepted.
    """
    connector = Connector.objects.select_for_update().get(pk=connector_id)
    secret = webhook_secret_generate()
    _rotate(connector, secret)
    connector.save(
        update_fields=[
            "webhook_secret",
            "webhook_secret_previous",
            "webhook_secret_rotated_at",
            "updated_at",
        ]
    )
    return secret


@transaction.atomic
def connector_forget_previous_secret(*, connector_id: int) -> bool:
    """End a rotation: stop accepting the previous secret. Returns False if there was none."""
    updated = (
        Connector.objects.filter(pk=connector_id)
        .exclude(webhook_secret_previous="")
        .update(webhook_secret_previous="", updated_at=timezone.now())
    )
    return updated > 0


@transaction.atomic
def connector_reset_api_token(*, connector_id: int) -> str:
    """Replace the API token at once (the old one stops working) and return the new one."""
    token = api_token_generate()
    Connector.objects.filter(pk=connector_id).update(
        api_token_hash=api_token_hash(token), updated_at=timezone.now()
    )
    return token


def _rotate(connector: Connector, new_secret: str) -> None:
    connector.webhook_secret_previous = connector.webhook_secret
    connector.webhook_secret = new_secret
    connector.webhook_secret_rotated_at = timezone.now()


# -- inbound events -----------------------------------------------------------------------
class Intake(enum.Enum):
    ACCEPTED = "accepted"  # new event, stored and queued
    DUPLICATE = "duplicate"  # same id, same body: a re-delivery
    CONFLICT = "conflict"  # same id, different body


class ConnectorChanged(Exception):
    """The connector changed (disabled, secrets rotated) after the copy the request used."""


@dataclass(frozen=True)
class IntakeResult:
    outcome: Intake
    event_id: int
    status: str  # the event's status as stored (a new event's is "accepted")


def event_record(
    *,
    connector: Connector,
    webhook_id: str,
    body_sha256: str,
    payload: WebhookPayload,
) -> IntakeResult:
    """Store a verified, validated webhook and queue its apply task, in one transaction.

    Idempotent per (connector, webhook_id): a re-delivery with the same body changes
    nothing. The insert is tried first (new events are the common case: no SELECT before
    it) and skips a row that the unique constraint refuses, a re-delivery or the loser of
    two racing identical deliveries, which then reads the stored row. It happens only if
    `connector` is still enabled with the same secrets, else ConnectorChanged is raised:
    the request was checked against an outdated copy and must be checked again.
    """
    inserted = outbox_enqueue_with_row(
        InboundEvent,
        {
            "connector": connector.pk,
            "webhook_id": webhook_id,
            "type": payload.type,
            "body_sha256": body_sha256,
            "occurred_at": payload.occurred_at,
            "payload": payload.items,
            "total_items": len(payload.items),
            "received_at": timezone.now(),
        },
        conflict_fields=("connector", "webhook_id"),
        returning=("status",),
        task_name=APPLY_TASK,
        id_kwarg="event_id",
        dedup_prefix="event:",
        guard=connector_unchanged(connector),
    )
    if inserted is None:
        winner = _event_for(connector, webhook_id)
        if winner is None:  # the guard, not the unique constraint, stopped the insert
            raise ConnectorChanged(connector.slug)
        return _compare(winner, body_sha256)
    event_id, status = inserted
    return IntakeResult(Intake.ACCEPTED, event_id, status)


def _event_for(connector: Connector, webhook_id: str) -> InboundEvent | None:
    events = InboundEvent.objects.only("pk", "status", "body_sha256")
    return events.filter(connector=connector, webhook_id=webhook_id).first()


def _compare(existing: InboundEvent, body_sha256: str) -> IntakeResult:
    same = existing.body_sha256 == body_sha256
    return IntakeResult(Intake.DUPLICATE if same else Intake.CONFLICT, existing.pk, existing.status)


class NothingToRetry(Exception):
    """The event has no failed items, or is still being applied."""


@transaction.atomic
def event_retry_failed(*, event_id: int) -> InboundEvent:
    """Queue the event's failed items to be applied again; the others are left alone.

    The failed items stay listed in `errors` until the worker re-applies them, so a retry
    requested twice before the worker runs still applies each item once per run.
    """
    event = InboundEvent.objects.select_for_update().get(pk=event_id)
    if event.status not in InboundEvent.COMPLETED_STATUSES:
        raise NothingToRetry(f"the event is still {event.get_status_display().lower()}")
    if not event.errors:
        raise NothingToRetry("the event has no failed items")
    event.status = InboundEvent.Status.ACCEPTED
    event.completed_at = None
    event.save(update_fields=["status", "completed_at"])
    retry_number = event.attempts + 1
    outbox_enqueue(
        task_name=APPLY_TASK,
        kwargs={"event_id": event.pk},
        dedup_key=f"event:{event.pk}:retry:{retry_number}",
    )
    return event
