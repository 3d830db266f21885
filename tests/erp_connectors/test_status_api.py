"""GET /api/v1/erp/<slug>/events/<webhook-id> and POST …/retry (CONTRACT §2 "Event status")."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client
from django.urls import reverse, set_script_prefix
from django.utils import timezone

from erp_connectors.http import event_status_path
from erp_connectors.models import Connector, InboundEvent
from syncplatform.outbox.models import OutboxMessage

from .conftest import Sender, stock_body

pytestmark = pytest.mark.django_db

URL = "/api/v1/erp/acme/events/{}"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def mark_partially_applied(event: InboundEvent) -> None:
    event.status = InboundEvent.Status.PARTIALLY_APPLIED
    event.attempts = 1
    event.applied_items = 1
    event.failed_items = 1
    event.completed_at = timezone.now()
    event.errors = [
        {"index": 1, "sku": "NOPE", "code": "unknown_sku", "message": "no product with sku 'NOPE'"}
    ]
    event.save()


def two_item_event(sender: Sender, webhook_id: str = "evt_1") -> InboundEvent:
    items = [
        {"sku": "SKU-1", "warehouse": "main", "quantity": 1, "updated_at": "2026-11-22T10:00:00Z"},
        {"sku": "NOPE", "warehouse": "main", "quantity": 2, "updated_at": "2026-11-22T10:00:00Z"},
    ]
    assert sender.send(stock_body(*items), webhook_id).status_code == 202
    return InboundEvent.objects.get(webhook_id=webhook_id)


# -- authentication -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer wrong-token-wrong-token", id="wrong-token"),
        pytest.param("Basic YWNtZTpzZWNyZXQ=", id="basic"),
        pytest.param("Token {token}", id="other-scheme"),
    ],
)
def test_missing_or_wrong_token_is_401(
    sender: Sender, client: Client, connector, authorization: str | None
) -> None:
    two_item_event(sender)
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=connector.api_token)
    response = client.get(URL.format("evt_1"), headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["errors"]


def test_another_connectors_token_is_401(
    sender: Sender, client: Client, other_connector, bearer: Callable
) -> None:
    two_item_event(sender)
    response = client.get(URL.format("evt_1"), headers=bearer(other_connector.api_token))
    assert response.status_code == 401


def test_another_connectors_event_is_404(
    sender: Sender, client: Client, other_connector, bearer: Callable
) -> None:
    # Given an event of globex
    Sender(client, other_connector).send(stock_body(), "evt_globex")
    # When acme asks for it under its own slug, with its own token
    response = client.get(URL.format("evt_globex"), headers=bearer())
    # Then it does not exist as far as acme can tell
    assert response.status_code == 404


def test_unknown_event_is_404(client: Client, bearer: Callable) -> None:
    assert client.get(URL.format("evt_none"), headers=bearer()).status_code == 404


@pytest.mark.parametrize("suffix", ["", "/retry"])
def test_an_id_with_a_nul_character_is_404_not_a_server_error(
    sender: Sender, client: Client, bearer: Callable, suffix: str
) -> None:
    # The intake refuses control characters in ids, and PostgreSQL text cannot hold NUL
    mark_partially_applied(two_item_event(sender))
    method = client.post if suffix else client.get
    response = method(URL.format("evt_1%00") + suffix, headers=bearer())
    assert response.status_code == 404
    assert response.json()["errors"]


def test_a_disabled_connectors_token_is_401(sender: Sender, client: Client, bearer) -> None:
    two_item_event(sender)
    Connector.objects.filter(slug="acme").update(enabled=False)
    assert client.get(URL.format("evt_1"), headers=bearer()).status_code == 401


def test_the_token_is_case_insensitive_in_scheme_only(
    sender: Sender, client: Client, connector
) -> None:
    two_item_event(sender)
    ok = client.get(URL.format("evt_1"), headers={"Authorization": f"bearer {connector.api_token}"})
    assert ok.status_code == 200
    upper = {"Authorization": f"Bearer {connector.api_token.upper()}"}
    assert client.get(URL.format("evt_1"), headers=upper).status_code == 401


# -- content ------------------------------------------------------------------------------------
def test_status_of_a_new_event(sender: Sender, client: Client, bearer: Callable) -> None:
    event = two_item_event(sender)

    response = client.get(URL.format("evt_1"), headers=bearer())

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert response.json() == {
        "id": "evt_1",
        "type": "stock.updated",
        "status": "accepted",
        "received_at": DjangoJSONEncoder().default(event.received_at),
        "completed_at": None,
        "attempts": 0,
        "items": {"total": 2, "applied": 0, "stale": 0, "failed": 0},
        "errors": [],
    }


def test_status_after_a_partial_apply(sender: Sender, client: Client, bearer: Callable) -> None:
    mark_partially_applied(two_item_event(sender))

    body = client.get(URL.format("evt_1"), headers=bearer()).json()

    assert body["status"] == "partially_applied"
    assert body["attempts"] == 1
    assert body["completed_at"] is not None
    assert body["items"] == {"total": 2, "applied": 1, "stale": 0, "failed": 1}
    assert body["errors"] == [
        {"index": 1, "sku": "NOPE", "code": "unknown_sku", "message": "no product with sku 'NOPE'"}
    ]


@pytest.mark.parametrize(
    "webhook_id",
    ["evt/with/slashes", "evt?query=1#frag", "evt%20percent", "ümlaut id", "evt_x/retry"],
)
def test_ids_that_need_quoting_are_reachable_through_the_status_url(
    sender: Sender, client: Client, bearer: Callable, webhook_id: str
) -> None:
    response = sender.send(stock_body(), webhook_id)
    assert response.status_code == 202

    status = client.get(path_of(response.json()["status_url"]), headers=bearer())

    assert status.status_code == 200
    assert status.json()["id"] == webhook_id


@pytest.mark.parametrize("script_prefix", ["/", "/sync/"])
@pytest.mark.parametrize(
    "webhook_id", ["evt_1", "evt/with/slashes", "evt?q=1#f", "evt%20", "ü id", "!$&'()*+,;=~:@"]
)
def test_the_status_path_is_the_one_the_url_patterns_give(
    webhook_id: str, script_prefix: str
) -> None:
    set_script_prefix(script_prefix)
    try:
        expected = reverse(
            "erp_connectors:event", kwargs={"slug": "acme", "webhook_id": webhook_id}
        )
        assert event_status_path("acme", webhook_id) == expected
    finally:
        set_script_prefix("/")


# -- retry ----------------------------------------------------------------------------------------
def test_retry_requeues_the_failed_items(sender: Sender, client: Client, bearer: Callable) -> None:
    event = two_item_event(sender)
    mark_partially_applied(event)
    OutboxMessage.objects.all().delete()

    response = client.post(URL.format("evt_1") + "/retry", headers=bearer())

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert body["completed_at"] is None
    assert body["errors"][0]["sku"] == "NOPE"  # still failed until the worker re-applies it
    message = OutboxMessage.objects.get()
    assert message.task_name == "erp_connectors.apply_event"
    assert message.kwargs == {"event_id": event.pk}
    assert message.dedup_key == f"event:{event.pk}:retry:2"
    event.refresh_from_db()
    assert event.pending_indexes() == [1]


def test_retry_with_nothing_failed_is_409(sender: Sender, client: Client, bearer) -> None:
    event = two_item_event(sender)
    event.status = InboundEvent.Status.APPLIED
    event.applied_items = 2
    event.save()

    response = client.post(URL.format("evt_1") + "/retry", headers=bearer())

    assert response.status_code == 409
    assert response.json()["errors"]
    assert OutboxMessage.objects.count() == 1  # only the original apply


def test_retry_while_still_being_applied_is_409(sender: Sender, client: Client, bearer) -> None:
    two_item_event(sender)
    response = client.post(URL.format("evt_1") + "/retry", headers=bearer())
    assert response.status_code == 409


def test_retry_twice_queues_once(sender: Sender, client: Client, bearer: Callable) -> None:
    mark_partially_applied(two_item_event(sender))
    assert client.post(URL.format("evt_1") + "/retry", headers=bearer()).status_code == 202
    assert client.post(URL.format("evt_1") + "/retry", headers=bearer()).status_code == 409
    assert OutboxMessage.objects.count() == 2  # the original apply and one retry


def test_retry_needs_the_token_and_the_owner(
    sender: Sender, client: Client, other_connector, bearer: Callable
) -> None:
    mark_partially_applied(two_item_event(sender))
    assert client.post(URL.format("evt_1") + "/retry").status_code == 401
    other = bearer(other_connector.api_token)
    assert client.post(URL.format("evt_1") + "/retry", headers=other).status_code == 401
    other_url = "/api/v1/erp/globex/events/evt_1/retry"
    assert client.post(other_url, headers=other).status_code == 404


def test_an_event_whose_id_ends_in_retry_can_be_retried(
    sender: Sender, client: Client, bearer: Callable
) -> None:
    mark_partially_applied(two_item_event(sender, "evt/retry"))
    response = client.post(URL.format("evt/retry/retry"), headers=bearer())
    assert response.status_code == 202
    assert response.json()["id"] == "evt/retry"


def test_other_methods_are_405(sender: Sender, client: Client, bearer: Callable) -> None:
    two_item_event(sender)
    assert client.post(URL.format("evt_1"), headers=bearer()).status_code == 405
    assert client.delete(URL.format("evt_1"), headers=bearer()).status_code == 405


def test_retry_needs_no_csrf_token(sender: Sender, bearer: Callable) -> None:
    mark_partially_applied(two_item_event(sender))
    client = Client(enforce_csrf_checks=True)
    assert client.post(URL.format("evt_1") + "/retry", headers=bearer()).status_code == 202
