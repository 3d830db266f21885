"""The admin: secrets shown once, rotation and token reset, retry of failed items."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from erp_connectors.credentials import api_token_hash
from erp_connectors.models import Connector, InboundEvent
from syncplatform.outbox.models import OutboxMessage

from .conftest import Sender, stock_body

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:erp_connectors_connector_changelist"


def shown(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_adding_a_connector_shows_its_secrets_once(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:erp_connectors_connector_add"),
        {
            "slug": "acme",
            "name": "ACME",
            "enabled": "on",
            "erp_url": "",
            "erp_token": "",
            "notify_email": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    message = shown(response)
    connector = Connector.objects.get()
    assert connector.webhook_secret in message
    token = re.search(r"api_token: <code>([^<]+)</code>", message).group(1)
    assert connector.api_token_hash == api_token_hash(token)

    # The change page never shows the secret again
    page = admin_client.get(reverse("admin:erp_connectors_connector_change", args=[connector.pk]))
    assert connector.webhook_secret not in page.content.decode()


def test_rotate_action_keeps_the_previous_secret_and_shows_the_new_one(
    admin_client: Client, connector
) -> None:
    old = connector.webhook_secret
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "rotate_webhook_secret", "_selected_action": [connector.connector.pk]},
        follow=True,
    )
    fresh = Connector.objects.get()
    assert fresh.webhook_secret != old
    assert fresh.webhook_secret_previous == old
    assert fresh.webhook_secret in shown(response)


def test_forget_previous_secret_action(admin_client: Client, connector) -> None:
    admin_client.post(
        reverse(CHANGELIST),
        {"action": "rotate_webhook_secret", "_selected_action": [connector.connector.pk]},
    )
    admin_client.post(
        reverse(CHANGELIST),
        {"action": "forget_previous_secret", "_selected_action": [connector.connector.pk]},
    )
    assert Connector.objects.get().webhook_secret_previous == ""


def test_reset_token_action(admin_client: Client, connector) -> None:
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "reset_api_token", "_selected_action": [connector.connector.pk]},
        follow=True,
    )
    fresh = Connector.objects.get()
    assert fresh.api_token_hash != api_token_hash(connector.api_token)
    token = re.search(r"api_token: <code>([^<]+)</code>", shown(response)).group(1)
    assert fresh.api_token_hash == api_token_hash(token)


def test_event_pages_and_retry_action(admin_client: Client, sender: Sender) -> None:
    sender.send(stock_body(), "evt_1")
    event = InboundEvent.objects.get()
    event.status = InboundEvent.Status.FAILED
    event.failed_items = 1
    event.errors = [{"index": 0, "sku": "SKU-1", "code": "unknown_sku", "message": "<b>no</b>"}]
    event.save()

    listing = admin_client.get(
        reverse("admin:erp_connectors_inboundevent_changelist"), {"status__exact": "failed"}
    )
    assert listing.status_code == 200
    page = admin_client.get(reverse("admin:erp_connectors_inboundevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert "&lt;b&gt;no&lt;/b&gt;" in page.content.decode()

    admin_client.post(
        reverse("admin:erp_connectors_inboundevent_changelist"),
        {"action": "retry_failed_items", "_selected_action": [event.pk]},
    )
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.ACCEPTED
    assert OutboxMessage.objects.count() == 2
