"""Notifications leave through the outbox and are delivered by a real worker, with retries."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from django.db import transaction

from notifications.models import Notification
from notifications.services import notification_create
from syncplatform.deadletters.models import DeadLetter
from tests.support.http_server import json_response, local_http_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def create(channel: str, recipient: str, key: str = "run:1") -> Notification | None:
    with transaction.atomic():
        return notification_create(
            channel=channel,
            recipient=recipient,
            subject="Import 1 completed",
            body="1000 rows: 990 succeeded, 10 failed.",
            data={"succeeded": 990, "failed": 10},
            dedup_key=key,
        )


def status_of(notification: Notification) -> str:
    notification.refresh_from_db()
    return notification.status


def test_email_is_sent_by_the_worker(start_worker):
    mail_dir = tempfile.mkdtemp(prefix="sp-mail-")
    start_worker(
        "default",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=mail_dir,
    )
    notification = create(Notification.Channel.EMAIL, "staff@shop.example")
    wait_until(lambda: status_of(notification) == "sent", timeout=30, what="sent")
    [message] = [p.read_text() for p in Path(mail_dir).iterdir()]
    assert "To: staff@shop.example" in message
    assert "990 succeeded, 10 failed" in message


def test_the_same_fact_is_announced_once(transactional_db, settings):
    settings.OUTBOX_FAST_PATH = False
    assert create(Notification.Channel.EMAIL, "a@shop.example", key="run:7") is not None
    assert create(Notification.Channel.EMAIL, "a@shop.example", key="run:7") is None
    assert Notification.objects.count() == 1


def test_webhook_receiver_outage_is_retried_until_it_answers(start_worker):
    answers = iter([503, 429, 200])

    with local_http_server(lambda request: json_response(next(answers), {})) as receiver:
        start_worker("default")
        notification = create(Notification.Channel.WEBHOOK, f"{receiver.url}/alerts")
        wait_until(lambda: status_of(notification) == "sent", timeout=30, what="sent")
    assert len(receiver.requests) == 3
    assert receiver.requests[-1].json()["data"] == {"succeeded": 990, "failed": 10}
    notification.refresh_from_db()
    assert notification.attempts == 3
    assert not DeadLetter.objects.exists()


def test_webhook_receiver_that_refuses_is_not_retried(start_worker):
    with local_http_server(lambda request: json_response(404, {})) as receiver:
        start_worker("default")
        notification = create(Notification.Channel.WEBHOOK, f"{receiver.url}/gone")
        wait_until(lambda: status_of(notification) == "failed", timeout=30, what="failed")
        letter = wait_until(lambda: DeadLetter.objects.first(), timeout=30, what="dead letter")
    assert letter.reason == DeadLetter.Reason.PERMANENT
    assert len(receiver.requests) == 1
