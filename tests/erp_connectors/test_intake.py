"""POST /webhooks/erp/<slug>/: every row of CONTRACT §2's response table, and hostile input."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client

from erp_connectors.models import Connector, InboundEvent
from erp_connectors.services import (
    connector_forget_previous_secret,
    connector_rotate_webhook_secret,
    connector_save,
)
from syncplatform.outbox.models import OutboxMessage
from tests.support.db_faults import writes_fail

from .conftest import Sender, signed_headers, stock_body

pytestmark = pytest.mark.django_db


def assert_nothing_stored() -> None:
    assert InboundEvent.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


# -- 202: new and valid -----------------------------------------------------------------------
def test_new_valid_event_is_stored_with_its_outbox_row_and_accepted(sender: Sender) -> None:
    # When a valid, signed stock event arrives
    response = sender.send(stock_body(), "evt_1")

    # Then it is accepted with a status URL
    assert response.status_code == 202
    body = response.json()
    assert body == {
        "id": "evt_1",
        "status": "accepted",
        "status_url": "http://testserver/api/v1/erp/acme/events/evt_1",
    }
    # And the event and its apply task were both recorded before the answer
    event = InboundEvent.objects.get()
    assert event.webhook_id == "evt_1"
    assert event.type == "stock.updated"
    assert event.status == "accepted"
    assert event.total_items == 1
    assert event.payload == [
        {
            "sku": "SKU-1",
            "warehouse": "main",
            "quantity": 12,
            "updated_at": "2026-11-22T09:59:58.120000+00:00",
        }
    ]
    message = OutboxMessage.objects.get()
    assert message.task_name == "erp_connectors.apply_event"
    assert message.kwargs == {"event_id": event.pk}
    assert message.dedup_key == f"event:{event.pk}"
    assert message.queue == "high"


def test_price_event_stores_amounts_as_exact_decimal_strings(sender: Sender) -> None:
    items = [
        {"sku": "A", "currency": "EUR", "amount": "19.99", "updated_at": "2026-11-22T10:00:00Z"},
        {"sku": "B", "currency": "USD", "amount": 5, "updated_at": "2026-11-22T10:00:00+02:00"},
    ]
    # JSON numbers with a fraction are read exactly, never through a float.
    raw = json.dumps(
        {
            "type": "price.updated",
            "timestamp": "2026-11-22T10:00:00Z",
            "data": {
                "items": [
                    *items,
                    {
                        "sku": "C",
                        "currency": "CHF",
                        "amount": 0,
                        "updated_at": "2026-11-22T10:00:00Z",
                    },
                ]
            },
        }
    )
    raw = raw.replace('"amount": 0', '"amount": 0.1000')

    response = sender.send(raw, "evt_prices")

    assert response.status_code == 202
    amounts = [item["amount"] for item in InboundEvent.objects.get().payload]
    assert amounts == ["19.99", "5", "0.1"]


def test_the_trailing_slash_is_optional(sender: Sender) -> None:
    body = json.dumps(stock_body())
    response = sender.client.post(
        "/webhooks/erp/acme",
        data=body,
        content_type="application/json",
        headers=signed_headers(sender.credentials.webhook_secret, "evt_1", body),
    )
    assert response.status_code == 202


def test_a_thousand_items_are_accepted(sender: Sender) -> None:
    items = [
        {"sku": f"S{i}", "warehouse": "w", "quantity": i, "updated_at": "2026-11-22T10:00:00Z"}
        for i in range(1000)
    ]
    response = sender.send(stock_body(*items))
    assert response.status_code == 202
    assert InboundEvent.objects.get().total_items == 1000


# -- 200 duplicate / 409 conflict -------------------------------------------------------------
def test_same_id_and_body_again_is_a_duplicate_and_stores_nothing_new(sender: Sender) -> None:
    body = json.dumps(stock_body())
    assert sender.send(body, "evt_1").status_code == 202

    # When the ERP delivers the same event again (a fresh signature, same bytes)
    response = sender.send(body, "evt_1")

    # Then it learns the current status, and nothing new is stored
    assert response.status_code == 200
    assert response.json() == {
        "id": "evt_1",
        "status": "accepted",
        "duplicate": True,
        "status_url": "http://testserver/api/v1/erp/acme/events/evt_1",
    }
    assert InboundEvent.objects.count() == 1
    assert OutboxMessage.objects.count() == 1


def test_duplicate_reports_the_current_status(sender: Sender) -> None:
    body = json.dumps(stock_body())
    sender.send(body, "evt_1")
    InboundEvent.objects.update(status=InboundEvent.Status.PARTIALLY_APPLIED)

    assert sender.send(body, "evt_1").json()["status"] == "partially_applied"


def test_same_id_with_a_different_body_is_a_conflict(sender: Sender) -> None:
    sender.send(stock_body(), "evt_1")
    other = stock_body(
        {"sku": "SKU-1", "warehouse": "main", "quantity": 99, "updated_at": "2026-11-22T10:00:00Z"}
    )

    response = sender.send(other, "evt_1")

    assert response.status_code == 409
    assert response.json()["errors"][0]["path"] == "webhook-id"
    assert InboundEvent.objects.get().payload[0]["quantity"] == 12
    assert OutboxMessage.objects.count() == 1


def test_the_same_id_from_two_connectors_is_two_events(
    sender: Sender, other_connector, client: Client
) -> None:
    assert sender.send(stock_body(), "evt_1").status_code == 202
    other = Sender(client, other_connector)
    assert other.send(stock_body(), "evt_1").status_code == 202
    assert InboundEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_first_deliveries_store_one_event(connector) -> None:
    # Given eight ERP retries of one event arriving at the same moment
    body = json.dumps(stock_body())
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            client = Client()
            headers = signed_headers(connector.webhook_secret, "evt_race", body)
            barrier.wait(timeout=10)
            response = client.post(
                "/webhooks/erp/acme/", data=body, content_type="application/json", headers=headers
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then exactly one is accepted, the rest are duplicates, and one event is stored
    assert sorted(statuses) == [200] * 7 + [202]
    assert InboundEvent.objects.count() == 1
    assert OutboxMessage.objects.count() == 1


# -- 401: signatures --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"webhook-signature": ""}, id="empty-signature"),
        pytest.param({"webhook-signature": "v1"}, id="no-comma"),
        pytest.param({"webhook-signature": "v1,a,b"}, id="two-commas"),
        pytest.param({"webhook-signature": "v1,!!!not-base64!!!"}, id="bad-base64"),
        pytest.param({"webhook-signature": "v1,abc"}, id="bad-padding"),
        pytest.param({"webhook-signature": "v2,AAAA"}, id="unknown-version"),
        pytest.param(
            {"webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, id="wrong"
        ),
        pytest.param({"webhook-signature": " " * 50}, id="spaces"),
        pytest.param({"webhook-signature": "v1,é"}, id="non-ascii"),
        pytest.param({"webhook-timestamp": ""}, id="no-timestamp"),
        pytest.param({"webhook-timestamp": "yesterday"}, id="text-timestamp"),
        pytest.param({"webhook-timestamp": "nan"}, id="nan-timestamp"),
        pytest.param({"webhook-timestamp": "inf"}, id="inf-timestamp"),
        pytest.param({"webhook-timestamp": "1e300"}, id="huge-timestamp"),
        pytest.param({"webhook-timestamp": "-1"}, id="negative-timestamp"),
        pytest.param({"webhook-id": ""}, id="no-id"),
        pytest.param({"webhook-id": "evt_other"}, id="id-not-signed"),
    ],
)
def test_bad_signature_headers_are_401(sender: Sender, headers: dict[str, str]) -> None:
    response = sender.send(stock_body(), "evt_1", headers=headers)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["path"] == "webhook-signature"
    assert_nothing_stored()


def test_missing_signature_headers_are_401(sender: Sender) -> None:
    response = sender.client.post(
        sender.url, data=json.dumps(stock_body()), content_type="application/json"
    )
    assert response.status_code == 401
    assert_nothing_stored()


def test_a_tampered_body_is_401(sender: Sender) -> None:
    body = json.dumps(stock_body())
    headers = signed_headers(sender.credentials.webhook_secret, "evt_1", body)
    tampered = body.replace("12", "13")
    response = sender.client.post(
        sender.url, data=tampered, content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert_nothing_stored()


def test_another_connectors_secret_is_401(sender: Sender, other_connector) -> None:
    response = sender.send(stock_body(), secret=other_connector.webhook_secret)
    assert response.status_code == 401
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        (timedelta(minutes=-6), 401),
        (timedelta(minutes=-4), 202),
        (timedelta(minutes=4), 202),
        (timedelta(minutes=6), 401),
    ],
)
def test_timestamps_are_accepted_within_five_minutes(
    sender: Sender, offset: timedelta, status: int
) -> None:
    response = sender.send(stock_body(), at=datetime.now(UTC) + offset)
    assert response.status_code == status


def test_a_space_separated_signature_list_is_accepted(sender: Sender) -> None:
    body = json.dumps(stock_body())
    headers = signed_headers(sender.credentials.webhook_secret, "evt_1", body)
    headers["webhook-signature"] = f"v1,bm9wZQ== {headers['webhook-signature']} v2,xyz"
    response = sender.client.post(
        sender.url, data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "noise",
    ["garbage", "v1", "v1,", "v1,not base64!", ",abc", "v1,a,b"],
)
def test_a_malformed_entry_does_not_hide_a_valid_signature_after_it(
    sender: Sender, noise: str
) -> None:
    body = json.dumps(stock_body())
    headers = signed_headers(sender.credentials.webhook_secret, "evt_1", body)
    headers["webhook-signature"] = f"{noise}  {headers['webhook-signature']}"
    response = sender.client.post(
        sender.url, data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 202


def test_a_list_of_only_malformed_entries_is_401(sender: Sender) -> None:
    body = json.dumps(stock_body())
    headers = signed_headers(sender.credentials.webhook_secret, "evt_1", body)
    headers["webhook-signature"] = "garbage v1 ,,,"
    response = sender.client.post(
        sender.url, data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 401


# -- secret rotation --------------------------------------------------------------------------
def test_both_live_secrets_are_accepted_and_a_second_rotation_drops_the_oldest(
    sender: Sender,
) -> None:
    connector = sender.credentials.connector
    first = sender.credentials.webhook_secret
    # When the secret is rotated
    second = connector_rotate_webhook_secret(connector_id=connector.pk)
    # Then signatures made with the old and the new secret are both accepted
    assert sender.send(stock_body(), "evt_a", secret=first).status_code == 202
    assert sender.send(stock_body(), "evt_b", secret=second).status_code == 202

    # When it is rotated again
    third = connector_rotate_webhook_secret(connector_id=connector.pk)
    # Then the oldest secret is refused, the two newest accepted
    assert sender.send(stock_body(), "evt_c", secret=first).status_code == 401
    assert sender.send(stock_body(), "evt_d", secret=second).status_code == 202
    assert sender.send(stock_body(), "evt_e", secret=third).status_code == 202


def test_rotation_by_create_connector_keeps_the_old_secret_live(sender: Sender) -> None:
    first = sender.credentials.webhook_secret
    new = connector_save(slug="acme", rotate_webhook_secret=True).webhook_secret
    assert new != first
    assert sender.send(stock_body(), "evt_a", secret=first).status_code == 202
    assert sender.send(stock_body(), "evt_b", secret=new).status_code == 202


# A web process keeps a copy of the connector between requests: a change made elsewhere (the
# admin, another process) must count from the next webhook on, not from some later one.
def test_a_new_secret_counts_from_the_next_webhook(sender: Sender) -> None:
    connector = sender.credentials.connector
    assert sender.send(stock_body(), "evt_a").status_code == 202
    new = connector_rotate_webhook_secret(connector_id=connector.pk)
    assert sender.send(stock_body(), "evt_b", secret=new).status_code == 202


def test_a_forgotten_secret_is_refused_from_the_next_webhook(sender: Sender) -> None:
    connector = sender.credentials.connector
    old = sender.credentials.webhook_secret
    connector_rotate_webhook_secret(connector_id=connector.pk)
    assert sender.send(stock_body(), "evt_a", secret=old).status_code == 202
    # When the rotation ends (the previous secret is forgotten)
    assert connector_forget_previous_secret(connector_id=connector.pk)
    # Then the old secret is refused at once, and nothing is stored for it
    assert sender.send(stock_body(), "evt_b", secret=old).status_code == 401
    assert list(InboundEvent.objects.values_list("webhook_id", flat=True)) == ["evt_a"]


def test_a_connector_disabled_elsewhere_is_404_from_the_next_webhook(sender: Sender) -> None:
    assert sender.send(stock_body(), "evt_a").status_code == 202
    # When the connector is disabled by another process (a plain UPDATE, no signal here)
    Connector.objects.filter(pk=sender.credentials.connector.pk).update(enabled=False)
    # Then the next webhook is refused and nothing is stored for it
    assert sender.send(stock_body(), "evt_b").status_code == 404
    assert list(InboundEvent.objects.values_list("webhook_id", flat=True)) == ["evt_a"]
    assert OutboxMessage.objects.count() == 1


def test_a_redelivery_to_a_connector_disabled_elsewhere_is_404(sender: Sender) -> None:
    assert sender.send(stock_body(), "evt_a").status_code == 202
    Connector.objects.filter(pk=sender.credentials.connector.pk).update(enabled=False)
    # When the ERP re-delivers the same event (nothing to insert, so no insert to guard)
    response = sender.send(stock_body(), "evt_a")
    # Then it is refused as any other webhook to a disabled connector
    assert response.status_code == 404


# -- 404: connector ---------------------------------------------------------------------------
def test_unknown_connector_is_404(client: Client, db: None) -> None:
    body = json.dumps(stock_body())
    headers = signed_headers("whsec_" + "A" * 32, "evt_1", body)
    response = client.post(
        "/webhooks/erp/nobody/", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 404
    assert response.json()["errors"]
    assert_nothing_stored()


def test_disabled_connector_is_404(sender: Sender) -> None:
    connector = sender.credentials.connector
    connector.enabled = False
    connector.save()
    assert sender.send(stock_body()).status_code == 404
    assert_nothing_stored()


# -- 400: headers, encoding, JSON, schema -----------------------------------------------------
def test_webhook_id_of_255_characters_is_accepted(sender: Sender) -> None:
    assert sender.send(stock_body(), "e" * 255).status_code == 202


def test_webhook_id_over_255_characters_is_400(sender: Sender) -> None:
    response = sender.send(stock_body(), "e" * 256)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "webhook-id"
    assert_nothing_stored()


def test_webhook_id_with_control_characters_is_400(sender: Sender) -> None:
    response = sender.send(stock_body(), "evt\x01one")
    assert response.status_code == 400
    assert_nothing_stored()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b'{"type": "stock.updated\xc3"}', id="truncated-utf8"),
        pytest.param(b"\xed\xa0\x80", id="encoded-surrogate"),
    ],
)
def test_body_that_is_not_utf8_is_400(sender: Sender, raw: bytes) -> None:
    # The signature is over the raw bytes, so a signed body is told what is wrong with it
    response = sender.send(raw)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["errors"][0]["message"]
    assert_nothing_stored()


_NOT_UTF8 = b'{"type": "stock.updated\xff"}'


@pytest.mark.parametrize(
    "headers_for",
    [
        pytest.param(lambda secret: {}, id="unsigned"),
        pytest.param(
            lambda secret: {
                **signed_headers(secret, "evt_1", _NOT_UTF8),
                "webhook-signature": "v1," + "A" * 43 + "=",
            },
            id="wrong-signature",
        ),
        pytest.param(
            # What a sender that decoded the body with replacement characters would sign
            lambda secret: signed_headers(
                secret, "evt_1", _NOT_UTF8.decode("utf-8", errors="replace")
            ),
            id="signed-other-bytes",
        ),
    ],
)
def test_a_body_that_is_not_utf8_and_not_signed_is_401(
    sender: Sender, headers_for: Callable[[str], dict[str, str]]
) -> None:
    response = sender.client.post(
        sender.url,
        data=_NOT_UTF8,
        content_type="application/json",
        headers=headers_for(sender.credentials.webhook_secret),
    )
    # An unsigned request learns nothing about its body
    assert response.status_code == 401
    assert response.json()["errors"][0]["path"] == "webhook-signature"
    assert_nothing_stored()


def test_a_body_that_is_not_utf8_signed_with_a_secret_rotated_elsewhere_is_400(
    sender: Sender,
) -> None:
    # Given this process's copy of the connector, made before the secret was rotated
    assert sender.send(stock_body(), "evt_a").status_code == 202
    new = connector_rotate_webhook_secret(connector_id=sender.credentials.connector.pk)
    # When a body that is not UTF-8 arrives signed with the new secret
    response = sender.send(b"\xff\xfe{}", "evt_b", secret=new)
    # Then it is known to be signed, and told what is wrong with it
    assert response.status_code == 400
    assert "UTF-8" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("not json", id="text"),
        pytest.param("{", id="truncated"),
        pytest.param('{"type": "stock.updated"} trailing', id="trailing-garbage"),
        pytest.param("\ufeff{}", id="bom"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="deeply-nested-arrays"),
        pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, id="deeply-nested-objects"),
        pytest.param("1" * 5000, id="huge-integer"),
        pytest.param('{"type": "stock.updated", "type": "price.updated"}', id="duplicate-keys"),
        pytest.param("[]", id="array"),
        pytest.param("null", id="null"),
        pytest.param('"text"', id="string"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_400(sender: Sender, text: str) -> None:
    response = sender.send(text)
    assert response.status_code == 400
    assert response.json()["errors"]
    assert_nothing_stored()


def _item(**fields: object) -> dict[str, object]:
    item: dict[str, object] = {
        "sku": "SKU-1",
        "warehouse": "main",
        "quantity": 1,
        "updated_at": "2026-11-22T10:00:00Z",
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not _MISSING}


_MISSING = object()


@pytest.mark.parametrize(
    ("raw_quantity", "message"),
    [
        ("NaN", "not valid JSON"),
        ("Infinity", "not valid JSON"),
        ("-Infinity", "not valid JSON"),
        ("true", "integer"),
        ("12.0", "integer"),
        ("1e2", "integer"),
        ('"12"', "integer"),
        ("null", "integer"),
        ("-1", "between"),
        ("2147483648", "between"),
        ("1" + "0" * 30, "between"),
        ("1e400", "integer"),
    ],
)
def test_hostile_quantities_are_400(sender: Sender, raw_quantity: str, message: str) -> None:
    # Raw text, so the values json.dumps would never write reach the server as sent.
    text = json.dumps(stock_body(_item(quantity=0))).replace(
        '"quantity": 0', f'"quantity": {raw_quantity}'
    )
    response = sender.send(text)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert message in errors[0]["message"]
    if message != "not valid JSON":
        assert errors[0]["path"] == "data.items[0].quantity"
    assert_nothing_stored()


def test_the_largest_quantity_is_accepted(sender: Sender) -> None:
    assert sender.send(stock_body(_item(quantity=2_147_483_647))).status_code == 202


@pytest.mark.parametrize(
    "raw_amount",
    [
        "true",
        "NaN",
        '"NaN"',
        '"Infinity"',
        '"-1"',
        "-1",
        "-0.5",
        '"1e5"',
        '" 1.5"',
        '"1,50"',
        '"19.99999"',
        "19.99999",
        "1e400",
        "1e-400",
        '"1000000000000000"',
        "null",
        "[1]",
        '""',
    ],
)
def test_hostile_amounts_are_400(sender: Sender, raw_amount: str) -> None:
    item = {"sku": "A", "currency": "EUR", "amount": 0, "updated_at": "2026-11-22T10:00:00Z"}
    text = json.dumps(
        {"type": "price.updated", "timestamp": "2026-11-22T10:00:00Z", "data": {"items": [item]}}
    ).replace('"amount": 0', f'"amount": {raw_amount}')
    response = sender.send(text)
    assert response.status_code == 400
    assert_nothing_stored()


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "EUR\n", "€UR", 978, None])
def test_bad_currencies_are_400(sender: Sender, currency: object) -> None:
    item = {"sku": "A", "currency": currency, "amount": "1", "updated_at": "2026-11-22T10:00:00Z"}
    response = sender.send(
        {"type": "price.updated", "timestamp": "2026-11-22T10:00:00Z", "data": {"items": [item]}}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "path": "data.items[0].currency",
            "message": "must be an ISO 4217 code in upper case, e.g. EUR",
        }
    ]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"sku": ""}, "data.items[0].sku"),
        ({"sku": "x" * 65}, "data.items[0].sku"),
        ({"sku": "a\x00b"}, "data.items[0].sku"),
        ({"sku": "\ud800"}, "data.items[0].sku"),
        ({"sku": 12}, "data.items[0].sku"),
        ({"sku": _MISSING}, "data.items[0].sku"),
        ({"warehouse": ""}, "data.items[0].warehouse"),
        ({"warehouse": "w" * 33}, "data.items[0].warehouse"),
        ({"updated_at": "2026-11-22T10:00:00"}, "data.items[0].updated_at"),
        ({"updated_at": "2026-11-22"}, "data.items[0].updated_at"),
        ({"updated_at": "2026-11-22 10:00:00Z"}, "data.items[0].updated_at"),
        ({"updated_at": "2026-13-22T10:00:00Z"}, "data.items[0].updated_at"),
        ({"updated_at": "2026-11-22T10:00:60Z"}, "data.items[0].updated_at"),
        ({"updated_at": "0001-01-01T00:00:00+01:00"}, "data.items[0].updated_at"),
        ({"updated_at": "2026-11-22T10:00:00Z\n"}, "data.items[0].updated_at"),
        ({"updated_at": 1_700_000_000}, "data.items[0].updated_at"),
    ],
)
def test_bad_item_fields_are_400_with_their_path(
    sender: Sender, fields: dict[str, object], path: str
) -> None:
    response = sender.send(stock_body(_item(**fields)))
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == [path]
    assert_nothing_stored()


def test_rfc3339_variants_are_accepted(sender: Sender) -> None:
    items = [
        _item(sku="a", updated_at="2026-11-22t10:00:00z"),
        _item(sku="b", updated_at="2026-11-22T10:00:00.123456789+05:30"),
        _item(sku="c", updated_at="2026-11-22T10:00:00-00:00"),
    ]
    assert sender.send(stock_body(*items)).status_code == 202
    stored = [item["updated_at"] for item in InboundEvent.objects.get().payload]
    assert stored == [
        "2026-11-22T10:00:00+00:00",
        "2026-11-22T10:00:00.123456+05:30",
        "2026-11-22T10:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        (stock_body(type="order.created"), ["type"]),
        ({"timestamp": "2026-11-22T10:00:00Z", "data": {"items": [_item()]}}, ["type"]),
        (stock_body(timestamp="yesterday"), ["timestamp"]),
        ({"type": "stock.updated", "data": {"items": [_item()]}}, ["timestamp"]),
        (stock_body(data=None), ["data"]),
        (stock_body(data={}), ["data.items"]),
        (stock_body(data={"items": {}}), ["data.items"]),
        (stock_body(data={"items": []}), ["data.items"]),
        (stock_body(data={"items": [_item()] * 1001}), ["data.items"]),
        (stock_body(data={"items": ["SKU-1"]}), ["data.items[0]"]),
    ],
)
def test_schema_errors_are_400_with_their_paths(
    sender: Sender, body: dict[str, object], paths: list[str]
) -> None:
    response = sender.send(body)
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == paths
    assert_nothing_stored()


def test_every_schema_error_is_reported_at_once(sender: Sender) -> None:
    items = [_item(sku=f"S{i}") for i in range(5)]
    items[1]["quantity"] = True
    items[3]["quantity"] = 1.5
    items[3]["warehouse"] = ""
    del items[4]["updated_at"]

    response = sender.send(stock_body(*items, timestamp="nope"))

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "path": "timestamp",
            "message": "must be an RFC 3339 date-time with offset, e.g. 2026-11-22T10:00:00Z",
        },
        {"path": "data.items[1].quantity", "message": "must be an integer"},
        {"path": "data.items[3].warehouse", "message": "must be 1 to 32 characters"},
        {"path": "data.items[3].quantity", "message": "must be an integer"},
        {"path": "data.items[4].updated_at", "message": "is required"},
    ]


def test_a_long_error_list_is_cut_short(sender: Sender) -> None:
    items = [_item(quantity=-1) for _ in range(1000)]
    errors = sender.send(stock_body(*items)).json()["errors"]
    assert len(errors) == 101
    assert errors[-1]["message"] == "900 more error(s) not shown"


def test_unknown_fields_are_ignored(sender: Sender) -> None:
    body = stock_body(_item(colour="red"), extra={"x": 1})
    assert sender.send(body).status_code == 202
    assert "colour" not in InboundEvent.objects.get().payload[0]


# -- 413: size --------------------------------------------------------------------------------
def test_body_over_5_mb_is_413(sender: Sender) -> None:
    body = stock_body()
    body["padding"] = "x" * (5 * 1024 * 1024)
    response = sender.send(body)
    assert response.status_code == 413
    assert response.json()["errors"]
    assert_nothing_stored()


def test_body_just_under_the_limit_is_read(sender: Sender, settings) -> None:
    text = json.dumps(stock_body())
    settings.ERP_WEBHOOK_MAX_BODY_BYTES = len(text.encode())
    assert sender.send(text).status_code == 202


def test_the_size_is_checked_before_the_connector(client: Client, db: None) -> None:
    response = client.post(
        "/webhooks/erp/nobody/", data=b"x" * (5 * 1024 * 1024 + 1), content_type="application/json"
    )
    assert response.status_code == 413


def test_a_declared_length_over_the_limit_is_refused_without_reading(
    sender: Sender, settings
) -> None:
    # Given a limit of 100 bytes and a request that declares 101 but sends 2
    settings.ERP_WEBHOOK_MAX_BODY_BYTES = 100
    response = sender.client.generic(
        "POST",
        sender.url,
        data=b"{}",
        content_type="application/json",
        CONTENT_LENGTH="101",
    )
    # Then the declared length alone decides: reading the 2 bytes would have led to a 401
    assert response.status_code == 413
    assert_nothing_stored()


def test_a_body_longer_than_it_claims_or_without_length_is_cut_off(
    sender: Sender, settings, rf
) -> None:
    # Given a request whose stream holds more than the limit but declares no length
    from erp_connectors.views import webhook_receive

    settings.ERP_WEBHOOK_MAX_BODY_BYTES = 1000
    request = rf.post(sender.url, data=b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    request._stream = io.BytesIO(b"{" * 5000)

    response = webhook_receive(request, slug="acme")

    assert response.status_code == 413
    assert_nothing_stored()


# -- 503: database ----------------------------------------------------------------------------
def test_database_failure_mid_transaction_leaves_nothing_half_written(sender: Sender) -> None:
    # Given the database fails after the event row was written, at the outbox row
    with writes_fail("outbox_outboxmessage"):
        response = sender.send(stock_body())
    # Then the sender is told to retry and the event row was rolled back with it
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert_nothing_stored()


# -- misc -------------------------------------------------------------------------------------
def test_only_post_is_allowed(sender: Sender) -> None:
    response = sender.client.get(sender.url)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response["Cache-Control"] == "no-store"


def test_the_body_hash_is_of_the_raw_bytes(sender: Sender) -> None:
    text = json.dumps(stock_body(), indent=2)
    sender.send(text)
    assert InboundEvent.objects.get().body_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_webhooks_need_no_csrf_token(connector) -> None:
    client = Client(enforce_csrf_checks=True)
    body = json.dumps(stock_body())
    response = client.post(
        "/webhooks/erp/acme/",
        data=body,
        content_type="application/json",
        headers=signed_headers(connector.webhook_secret, "evt_1", body),
    )
    assert response.status_code == 202
