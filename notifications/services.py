"""Record notifications (in the caller's transaction) and deliver them (in a task)."""

from __future__ import annotations

import logging
import smtplib

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from syncplatform.outbox.services import outbox_enqueue
from syncplatform.retry import PermanentError, TransientError

from .models import Notification

logger = logging.getLogger(__name__)

# (connect, read): a slow receiver must not hold a worker.
WEBHOOK_TIMEOUT = (3.05, 10)


def notification_create(
    *,
    channel: str,
    recipient: str,
    subject: str,
    body: str,
    dedup_key: str,
    data: dict | None = None,
) -> Notification | None:
    """Record a notification and queue its delivery. Returns None if it was already recorded.

    Call inside the transaction that records the fact being announced: the delivery task is
    queued through the outbox, so it is sent once that transaction commits, and never if it
    rolls back.
    """
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                channel=channel,
                recipient=recipient,
                subject=subject[:255],
                body=body,
                data=data or {},
                dedup_key=dedup_key,
            )
            outbox_enqueue(
                task_name="notifications.deliver_notification",
                kwargs={"notification_id": notification.pk},
                dedup_key=f"notification:{notification.pk}",
            )
    except IntegrityError:
        return None
    return notification


def notification_deliver(*, notification_id: int) -> None:
    """Send one notification. Idempotent: a sent notification is not sent again.

    Raises TransientError for faults worth retrying (SMTP or network trouble, a receiver's
    429/5xx), PermanentError for a receiver that refuses the message (other 4xx).
    """
    notification = Notification.objects.get(pk=notification_id)
    if notification.status == Notification.Status.SENT:
        return
    Notification.objects.filter(pk=notification_id).update(attempts=F("attempts") + 1)
    try:
        if notification.channel == Notification.Channel.EMAIL:
            _send_email(notification)
        else:
            _send_webhook(notification)
    except (TransientError, PermanentError) as exc:
        Notification.objects.filter(pk=notification_id).update(last_error=str(exc)[:2000])
        if isinstance(exc, PermanentError):
            Notification.objects.filter(pk=notification_id).update(
                status=Notification.Status.FAILED
            )
        raise
    Notification.objects.filter(pk=notification_id).update(
        status=Notification.Status.SENT, sent_at=timezone.now(), last_error=""
    )


def _send_email(notification: Notification) -> None:
    try:
        send_mail(
            notification.subject,
            notification.body,
            settings.DEFAULT_FROM_EMAIL,
            [notification.recipient],
        )
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientError(f"email to {notification.recipient} failed: {exc}") from exc


def _send_webhook(notification: Notification) -> None:
    payload = {
        "subject": notification.subject,
        "body": notification.body,
        "data": notification.data,
        "id": notification.pk,
        "created_at": notification.created_at.isoformat(),
    }
    try:
        response = requests.post(notification.recipient, json=payload, timeout=WEBHOOK_TIMEOUT)
    except requests.RequestException as exc:
        raise TransientError(f"webhook {notification.recipient} unreachable: {exc}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"webhook answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentError(f"webhook refused the message: {response.status_code}")
