"""A 202 is a promise: the event is applied whatever fails after the answer.

Real gunicorn, relay and worker processes on the test database; faults are real too: a
stopped broker, a SIGKILLed pool process, a SIGKILLed web server, an unreachable database.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
import requests
from django.db import transaction

from catalog.models import StockLevel
from catalog.services import ProductItem, product_upsert
from erp_connectors.models import InboundEvent
from erp_connectors.schemas import payload_parse
from erp_connectors.services import ConnectorCredentials, connector_save, event_record
from syncplatform.celery import app as celery_app
from syncplatform.deadletters.models import DeadLetter
from syncplatform.outbox.models import OutboxMessage
from syncplatform.outbox.relay import relay_once
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

from .conftest import signed_headers, stock_body

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SKUS = [f"SKU-{n}" for n in range(10)]


@pytest.fixture
def erp(transactional_db) -> ConnectorCredentials:
    with transaction.atomic():
        product_upsert(
            items=[ProductItem(sku, sku, True, datetime(2026, 1, 1, tzinfo=UTC)) for sku in SKUS]
        )
        return connector_save(slug="acme", name="ACME ERP")


def stock_event(n: int) -> dict:
    """Event n sets SKU-(n % 10) to quantity n, one second newer than event n-1."""
    return stock_body(
        {
            "sku": SKUS[n % len(SKUS)],
            "warehouse": "main",
            "quantity": n,
            "updated_at": f"2026-11-22T10:00:{n:02d}Z",
        }
    )


def post_event(base_url: str, erp: ConnectorCredentials, body: dict, webhook_id: str):
    text = json.dumps(body)
    headers = signed_headers(erp.webhook_secret, webhook_id, text)
    headers["Content-Type"] = "application/json"
    return requests.post(f"{base_url}/webhooks/erp/acme/", data=text, headers=headers, timeout=30)


def all_applied(count: int) -> bool:
    return InboundEvent.objects.filter(status="applied").count() == count


def newest_quantities(events: range) -> dict[str, int]:
    newest: dict[str, int] = {}
    for n in events:
        newest[SKUS[n % len(SKUS)]] = n
    return newest


def stored_quantities() -> dict[str, int]:
    return dict(StockLevel.objects.values_list("product__sku", "quantity"))


def test_events_accepted_while_the_broker_is_down_are_applied_when_it_returns(
    erp, private_redis, start_web, start_relay, start_worker
):
    # Given the whole pipeline on a broker of its own
    env = {"REDIS_URL": private_redis.url}
    web = start_web(**env)
    start_relay(**env)
    start_worker("high", **env)
    # When the broker goes down while the ERP keeps sending
    private_redis.stop()
    answers = [post_event(web.url, erp, stock_event(n), f"evt-{n}") for n in range(30)]
    # Then every event is still accepted, and waits in the outbox
    assert [a.status_code for a in answers] == [202] * 30
    assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 30
    assert requests.get(f"{web.url}/readyz", timeout=10).json()["broker"] == "unreachable"
    # And once the broker is back, all are applied, newest value per sku
    private_redis.start()
    wait_until(lambda: all_applied(30), timeout=120, what="30 events applied")
    assert stored_quantities() == newest_quantities(range(30))


def test_event_is_applied_even_if_the_web_process_dies_right_after_answering(
    erp, start_web, start_relay, start_worker
):
    # Given a web process that dies between its answer and the publish
    web = start_web(OUTBOX_FAST_PATH="false")
    start_worker("high")
    answer = post_event(web.url, erp, stock_event(7), "evt-7")
    assert answer.status_code == 202
    web.kill()
    assert OutboxMessage.objects.get().published_at is None
    # When the relay runs
    start_relay()
    # Then the accepted event is applied all the same
    wait_until(lambda: all_applied(1), timeout=60, what="event applied")
    assert stored_quantities() == {"SKU-7": 7}


def test_pool_process_killed_mid_apply_is_redelivered_and_applied_once(erp, settings, start_worker):
    worker = start_worker("high")
    settings.OUTBOX_FAST_PATH = False
    settings.OUTBOX_RELAY_GRACE_SECONDS = 0
    body = stock_event(3)
    with transaction.atomic():
        event = event_record(
            connector=erp.connector,
            webhook_id="evt-3",
            body_sha256=uuid.uuid4().hex,
            payload=payload_parse(json.dumps(body)),
        )
    # Given the event row is locked, so the worker's apply blocks mid-task
    with transaction.atomic():
        InboundEvent.objects.select_for_update().get(pk=event.event_id)
        relay_once(batch_size=1)
        inspector = celery_app.control.inspect(destination=[worker.hostname], timeout=2)
        wait_until(
            lambda: (inspector.active() or {}).get(worker.hostname),
            timeout=30,
            interval=0.2,
            what="apply task running",
        )
        # When the pool process running it is SIGKILLed
        children = worker.pool_children()
        assert children
        for child in children:
            child.kill()
        wait_until(lambda: "SIGKILL" in worker.log(), timeout=30, what="worker saw the kill")
    # Then the message is redelivered and the event applied exactly once
    wait_until(lambda: all_applied(1), timeout=60, what="event applied")
    event = InboundEvent.objects.get(pk=event.event_id)
    assert (event.total_items, event.applied_items, event.failed_items) == (1, 1, 0)
    assert stored_quantities() == {"SKU-3": 3}
    assert not DeadLetter.objects.exists()


def test_unreachable_database_answers_503_with_retry_after_not_500(erp, start_web):
    # Given a web process whose database does not answer
    web = start_web(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere")
    body = stock_event(1)
    # When an ERP sends an event, and a shopper reads a product
    webhook = post_event(web.url, erp, body, "evt-1")
    storefront = requests.get(f"{web.url}/api/v1/products/SKU-1", timeout=10)
    ready = requests.get(f"{web.url}/readyz", timeout=10)
    # Then both are told to come back later, and readiness names the database
    for response in (webhook, storefront):
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["errors"]
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
    assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 200


def test_a_backlog_of_events_travels_in_few_messages_and_is_all_applied(
    erp, broker, start_worker, settings
):
    # Given 25 events recorded while nothing published them
    settings.OUTBOX_FAST_PATH = False
    settings.OUTBOX_RELAY_GRACE_SECONDS = 0
    settings.OUTBOX_RELAY_BATCH_MESSAGE_SIZE = 20
    for n in range(25):
        with transaction.atomic():
            event_record(
                connector=erp.connector,
                webhook_id=f"evt-{n}",
                body_sha256=uuid.uuid4().hex,
                payload=payload_parse(json.dumps(stock_event(n))),
            )
    # When the relay publishes the backlog
    assert relay_once() == 25
    # Then it sends two messages of the batch task, which carry every event once
    messages = [json.loads(raw) for raw in broker.lrange("high", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["erp_connectors.apply_events"] * 2
    carried = sorted(
        event_id
        for m in messages
        for event_id in json.loads(base64.b64decode(m["body"]))[1]["event_ids"]
    )
    assert carried == sorted(InboundEvent.objects.values_list("pk", flat=True))
    # And a worker applies them all, newest value per sku
    start_worker("high")
    wait_until(lambda: all_applied(25), timeout=60, what="25 events applied")
    assert stored_quantities() == newest_quantities(range(25))
    assert set(InboundEvent.objects.values_list("attempts", flat=True)) == {1}


def record_stock_event(erp: ConnectorCredentials, n: int) -> None:
    with transaction.atomic():
        event_record(
            connector=erp.connector,
            webhook_id=f"evt-{n}",
            body_sha256=uuid.uuid4().hex,
            payload=payload_parse(json.dumps(stock_event(n))),
        )


def carried_event_counts(broker) -> list[int]:
    """Events per message waiting on `high`, newest message first (Redis LPUSHes)."""
    return [
        len(json.loads(base64.b64decode(json.loads(raw)["body"]))[1]["event_ids"])
        for raw in broker.lrange("high", 0, -1)
    ]


@pytest.mark.default_outbox
def test_commits_of_a_busy_stretch_share_one_relay_pass_and_message(erp, broker, start_relay):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the relay is woken per commit only on PostgreSQL (LISTEN/NOTIFY)")
    # Given a relay woken by each commit, gathering for a few seconds once it is busy
    relay = start_relay(OUTBOX_RELAY_POLL_SECONDS="60", OUTBOX_RELAY_GATHER_SECONDS="5")
    wait_until(lambda: "outbox relay started" in relay.log(), timeout=30, what="relay up")
    # And a first event, published on its own as soon as it commits
    record_stock_event(erp, 0)
    wait_until(lambda: carried_event_counts(broker) == [1], timeout=10, what="first message")
    # When five more events commit one after another, each in its own transaction
    for n in range(1, 6):
        record_stock_event(erp, n)
    # Then they travel together in one more message, not one message per commit
    wait_until(lambda: sum(carried_event_counts(broker)) == 6, timeout=20, what="all published")
    assert sorted(carried_event_counts(broker)) == [1, 5]
