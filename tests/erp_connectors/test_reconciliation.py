"""Reconciliation (CONTRACT §5): the ERP is a real local HTTP server, the database is real."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from catalog.models import Price, StockLevel
from catalog.services import (
    PriceItem,
    ProductItem,
    StockItem,
    price_apply,
    product_upsert,
    stock_apply,
)
from erp_connectors.models import Connector, ReconciliationRun
from erp_connectors.reconciliation import (
    ReconciliationAlreadyRunning,
    ReconciliationNotPossible,
    reconcile_connector,
    reconciliation_queue,
    reconciliation_queue_all,
)
from erp_connectors.services import connector_save
from notifications.models import Notification
from syncplatform.celery import app as celery_app
from syncplatform.outbox.models import OutboxMessage
from tests.support.http_server import Recorded, json_response, local_http_server
from tests.support.processes import BASE_DIR, process_env
from tests.support.waiting import wait_until

ERP_TOKEN = "erp-token-s3cr3t-value"
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
SKUS = ["SKU-1", "SKU-2", "SKU-3", "SKU-4"]


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def stock(sku: str, quantity: int, at: datetime, warehouse: str = "main") -> dict[str, Any]:
    return {"sku": sku, "warehouse": warehouse, "quantity": quantity, "updated_at": iso(at)}


def price(sku: str, amount: str, at: datetime, currency: str = "EUR") -> dict[str, Any]:
    return {"sku": sku, "currency": currency, "amount": amount, "updated_at": iso(at)}


@dataclass
class FakeErp:
    """Serves /stock and /prices page by page; `script` answers the first requests instead.

    pages[resource] is a list of item lists; page n links to page n+1 with cursor
    "<resource>-<n+1>". Every request is recorded with the time it arrived.
    """

    pages: dict[str, list[list[Any]]] = field(default_factory=dict)
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    delay: float = 0.0
    arrived: list[float] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        self.arrived.append(time.monotonic())
        if self.delay:
            self.release.wait(self.delay)
        if self.script:
            return self.script.pop(0)
        url = urlsplit(request.path)
        resource = url.path.strip("/")
        if resource not in self.pages:
            return json_response(404, {"errors": [{"path": "", "message": "not found"}]})
        cursor = parse_qs(url.query).get("cursor", [f"{resource}-1"])[0]
        number = int(cursor.rsplit("-", 1)[1])
        pages = self.pages[resource]
        next_cursor = f"{resource}-{number + 1}" if number < len(pages) else None
        return json_response(200, {"items": pages[number - 1], "next_cursor": next_cursor})


@pytest.fixture(autouse=True)
def _fast_erp_calls(settings: Any) -> None:
    settings.RECONCILE_BACKOFF_FACTOR = 0
    settings.RECONCILE_MAX_RETRIES = 2
    settings.RECONCILE_MAX_RETRY_WAIT = 5
    settings.RECONCILE_TIMEOUT = (2.0, 5.0)


@pytest.fixture
def erp() -> Iterator[tuple[FakeErp, str]]:
    fake = FakeErp()
    with local_http_server(fake) as server:
        yield fake, server
    fake.release.set()


@pytest.fixture
def erp_server(erp):
    return erp[1]


@pytest.fixture
def fake(erp) -> FakeErp:
    return erp[0]


def seed_catalog() -> None:
    """SKU-1..4 exist; each has stock (main) and a EUR price as of T1."""
    with transaction.atomic():
        product_upsert(items=[ProductItem(sku, sku, True, T0) for sku in SKUS])
        stock_apply(items=[StockItem(sku, "main", 10, T1) for sku in SKUS])
        price_apply(items=[PriceItem(sku, "EUR", Decimal("9.99"), T1) for sku in SKUS])


def make_connector(url: str, **fields: Any) -> Connector:
    fields.setdefault("notify_email", "ops@example.com")
    return connector_save(
        slug="acme", name="ACME", erp_url=url, erp_token=ERP_TOKEN, **fields
    ).connector


def stored_stock() -> dict[tuple[str, str], int]:
    return {
        (sku, warehouse): quantity
        for sku, warehouse, quantity in StockLevel.objects.values_list(
            "product__sku", "warehouse", "quantity"
        )
    }


def stored_prices() -> dict[tuple[str, str], Decimal]:
    return {
        (sku, currency): amount
        for sku, currency, amount in Price.objects.values_list("product__sku", "currency", "amount")
    }


def paths(server) -> list[str]:
    return [r.path for r in server.requests]


# -- paging and newer-wins ------------------------------------------------------------------
@pytest.mark.django_db
def test_every_page_is_read_and_only_newer_erp_values_are_applied(erp_server, fake) -> None:
    # Given a catalog as of T1, and an ERP listing stock on three pages and prices on two
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {
        "stock": [
            [stock("SKU-1", 11, T2), stock("SKU-2", 99, T1)],  # newer; equal (in sync)
            [stock("SKU-3", 98, T0), stock("SKU-4", 4, T2, warehouse="north")],  # older; new key
            [stock("SKU-4", 44, T2)],  # newer
        ],
        "prices": [
            [price("SKU-1", "12.50", T2), price("SKU-2", "1.00", T0)],  # newer; older
            [price("SKU-3", "7", T2, currency="USD")],  # new key
        ],
    }
    # When the connector is reconciled
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    # Then every page was fetched in order, with the token as Bearer and limit=1000
    assert paths(erp_server) == [
        "/stock?limit=1000",
        "/stock?limit=1000&cursor=stock-2",
        "/stock?limit=1000&cursor=stock-3",
        "/prices?limit=1000",
        "/prices?limit=1000&cursor=prices-2",
    ]
    assert {r.headers["Authorization"] for r in erp_server.requests} == {f"Bearer {ERP_TOKEN}"}
    # And only the newer values were written; the run counts exactly that
    assert (run.status, run.pages, run.found, run.fixed, run.failed) == ("completed", 5, 8, 5, 0)
    assert run.in_sync == 3
    assert run.trigger == "command"
    assert run.finished_at is not None
    assert run.error == ""
    assert stored_stock() == {
        ("SKU-1", "main"): 11,
        ("SKU-2", "main"): 10,
        ("SKU-3", "main"): 10,
        ("SKU-4", "main"): 44,
        ("SKU-4", "north"): 4,
    }
    assert stored_prices() == {
        ("SKU-1", "EUR"): Decimal("12.5"),
        ("SKU-2", "EUR"): Decimal("9.99"),
        ("SKU-3", "EUR"): Decimal("9.99"),
        ("SKU-4", "EUR"): Decimal("9.99"),
        ("SKU-3", "USD"): Decimal("7"),
    }


@pytest.mark.django_db
def test_a_second_run_finds_no_drift_and_sends_no_notification(erp_server, fake) -> None:
    # Given a run that fixed drift and notified the connector's address
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[price("SKU-1", "9.99", T1)]]}
    first = reconcile_connector(connector_id=connector.pk, trigger="schedule")
    assert (first.found, first.fixed) == (2, 1)
    notification = Notification.objects.get()
    assert notification.recipient == "ops@example.com"
    assert notification.dedup_key == f"reconciliation:{first.pk}"
    assert notification.subject == "Reconciliation of acme: 1 item(s) fixed"
    assert "found:    2 item(s)" in notification.body
    assert notification.data == {
        "run_id": first.pk,
        "connector": "acme",
        "status": "completed",
        "found": 2,
        "fixed": 1,
        "failed": 0,
    }
    assert OutboxMessage.objects.filter(task_name="notifications.deliver_notification").count() == 1
    # When the same ERP view is reconciled again
    second = reconcile_connector(connector_id=connector.pk, trigger="schedule")
    # Then nothing is drift, and nothing new is announced
    assert (second.status, second.found, second.fixed, second.in_sync) == ("completed", 2, 0, 2)
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_drift_without_a_notify_address_goes_to_the_operator_alerts(
    erp_server, fake, settings
) -> None:
    # Given a connector with no notify address, and the operators' alert channels
    settings.ALERT_EMAILS = ["oncall@shop.example"]
    settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/alerts"
    seed_catalog()
    connector = make_connector(erp_server.url, notify_email="")
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[]]}
    # When a run finds drift
    run = reconcile_connector(connector_id=connector.pk, trigger="schedule")
    assert (run.status, run.found, run.fixed) == ("completed", 1, 1)
    # Then the drift notice goes to every alert channel, once, like an operator alert
    notifications = list(Notification.objects.order_by("channel"))
    assert [(n.channel, n.recipient) for n in notifications] == [
        ("email", "oncall@shop.example"),
        ("webhook", "http://127.0.0.1:9/alerts"),
    ]
    alert = notifications[1]
    assert alert.dedup_key.startswith(f"alert:reconciliation_drift:{run.pk}:")
    assert {n.dedup_key for n in notifications} == {alert.dedup_key}
    assert alert.subject == "[syncplatform] Reconciliation of acme: 1 item(s) fixed"
    assert "found 1 item(s) where the ERP was newer" in alert.body
    assert (alert.data["kind"], alert.data["condition"]) == (
        "operator_alert",
        "reconciliation_drift",
    )
    assert alert.data["figures"] == {
        "run_id": run.pk,
        "connector": "acme",
        "status": "completed",
        "found": 1,
        "fixed": 1,
        "failed": 0,
    }
    assert alert.data["runbook"] == "docs/operations.md#reconciliation"
    assert OutboxMessage.objects.filter(task_name="notifications.deliver_notification").count() == 2
    # And a run with no drift announces nothing more
    reconcile_connector(connector_id=connector.pk, trigger="schedule")
    assert Notification.objects.count() == 2


@pytest.mark.django_db
def test_drift_with_nobody_to_tell_is_recorded_only(erp_server, fake, settings) -> None:
    settings.ALERT_EMAILS = []
    settings.ALERT_WEBHOOK_URL = ""
    seed_catalog()
    connector = make_connector(erp_server.url, notify_email="")
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[]]}
    run = reconcile_connector(connector_id=connector.pk, trigger="schedule")
    assert (run.status, run.found, run.fixed) == ("completed", 1, 1)
    assert not Notification.objects.exists()


# -- refused items --------------------------------------------------------------------------
@pytest.mark.django_db
def test_invalid_items_and_unknown_skus_fail_and_the_rest_is_applied(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {
        "stock": [
            [
                stock("SKU-1", 11, T2),
                {"sku": "SKU-2", "warehouse": "main", "quantity": -1, "updated_at": iso(T2)},
                stock("NOPE-1", 5, T2),
            ],
            ["not an object", stock("SKU-3", 33, T2)],
        ],
        "prices": [
            [price("SKU-1", "1.23456", T2), price("NOPE-2", "1", T2), price("SKU-2", "3", T2)]
        ],
    }
    run = reconcile_connector(connector_id=connector.pk, trigger="admin")
    assert (run.status, run.found, run.fixed, run.failed) == ("completed", 8, 3, 5)
    assert run.errors == [
        {
            "kind": "stock",
            "sku": "SKU-2",
            "code": "invalid",
            "message": "page 1 items[1].quantity: must be between 0 and 2147483647",
        },
        {
            "kind": "stock",
            "sku": "NOPE-1",
            "code": "unknown_sku",
            "message": run.errors[1]["message"],
        },
        {
            "kind": "stock",
            "sku": "",
            "code": "invalid",
            "message": "page 2 items[0]: must be an object",
        },
        {
            "kind": "price",
            "sku": "SKU-1",
            "code": "invalid",
            "message": "page 1 items[0].amount: must have at most 4 decimal places",
        },
        {
            "kind": "price",
            "sku": "NOPE-2",
            "code": "unknown_sku",
            "message": run.errors[4]["message"],
        },
    ]
    assert "NOPE-1" in run.errors[1]["message"]
    assert stored_stock()[("SKU-1", "main")] == 11
    assert stored_stock()[("SKU-2", "main")] == 10
    assert stored_stock()[("SKU-3", "main")] == 33
    assert stored_prices()[("SKU-1", "EUR")] == Decimal("9.99")
    assert stored_prices()[("SKU-2", "EUR")] == Decimal("3")


@pytest.mark.django_db
def test_a_sku_postgresql_cannot_store_fails_its_item_not_the_run(erp_server, fake) -> None:
    # Given an ERP page whose skus hold a NUL and a lone surrogate (valid JSON, both refused
    # by the validators), beside a valid item
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {
        "stock": [[stock("SKU\x00-9", 1, T2), stock("SKU-\ud800", 2, T2), stock("SKU-1", 11, T2)]],
        "prices": [[]],
    }
    # When the connector is reconciled
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    # Then the run completes: the two items failed, kept with U+FFFD, and the third applied
    assert (run.status, run.found, run.fixed, run.failed) == ("completed", 3, 1, 2)
    assert [(e["sku"], e["code"]) for e in run.errors] == [
        ("SKU\ufffd-9", "invalid"),
        ("SKU-\ufffd", "invalid"),
    ]
    assert run.errors[0]["message"] == "page 1 items[0].sku: must not contain control characters"
    assert ReconciliationRun.objects.get(pk=run.pk).errors == run.errors
    assert stored_stock()[("SKU-1", "main")] == 11


@pytest.mark.django_db
def test_the_kept_item_errors_are_capped_but_all_are_counted(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock(f"NOPE-{n}", 1, T2) for n in range(150)]], "prices": [[]]}
    run = reconcile_connector(connector_id=connector.pk, trigger="admin")
    assert (run.found, run.fixed, run.failed) == (150, 0, 150)
    assert len(run.errors) == 100
    assert run.errors[-1]["sku"] == "NOPE-99"


# -- transient faults are retried -----------------------------------------------------------
@pytest.mark.django_db
def test_a_429_is_retried_after_the_retry_after_it_asks_for(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[]]}
    fake.script = [json_response(429, {"errors": []}, **{"Retry-After": "1"})]
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert (run.status, run.fixed) == ("completed", 1)
    # The refused request was sent again, no sooner than the ERP asked
    assert paths(erp_server) == ["/stock?limit=1000", "/stock?limit=1000", "/prices?limit=1000"]
    assert fake.arrived[1] - fake.arrived[0] >= 0.95


@pytest.mark.django_db
def test_a_503_is_retried(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[price("SKU-1", "5", T2)]]}
    fake.script = [(503, {}, b"busy"), (502, {}, b"bad gateway")]
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert (run.status, run.found, run.fixed) == ("completed", 2, 2)
    assert paths(erp_server) == ["/stock?limit=1000"] * 3 + ["/prices?limit=1000"]


@pytest.mark.django_db
def test_retries_are_bounded_and_then_fail_the_run_with_the_status(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[]]}
    fake.script = [(503, {}, b"busy")] * 3
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert run.status == "failed"
    assert (
        run.error
        == f"GET {erp_server.url}/stock?limit=1000: 503 Service Unavailable (after 2 retries)"
    )
    assert len(erp_server.requests) == 3
    assert stored_stock()[("SKU-1", "main")] == 10


# -- permanent faults fail the run ----------------------------------------------------------
@pytest.mark.django_db
def test_a_401_fails_the_run_with_a_clear_reason_and_writes_nothing(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[price("SKU-1", "5", T2)]]}
    fake.script = [json_response(401, {"error": f"bad token {ERP_TOKEN}"})]
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert run.status == "failed"
    assert run.error == f"GET {erp_server.url}/stock?limit=1000: 401 Unauthorized"
    assert ERP_TOKEN not in run.error
    assert (run.found, run.fixed, run.failed) == (0, 0, 0)
    assert run.finished_at is not None
    # Not retried, and nothing else asked or written
    assert paths(erp_server) == ["/stock?limit=1000"]
    assert stored_stock()[("SKU-1", "main")] == 10
    assert stored_prices()[("SKU-1", "EUR")] == Decimal("9.99")
    assert not Notification.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>oops</html>", "the body is not JSON (not valid JSON: Expecting value"),
        (b'{"data": []}', 'the body is not a page (no "items" list)'),
        (b'{"items": [], "next_cursor": 7}', "next_cursor must be a non-empty string or null"),
    ],
)
def test_a_body_that_is_not_a_page_fails_the_run(erp_server, fake, body, reason) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[]], "prices": [[]]}
    fake.script = [(200, {"Content-Type": "application/json"}, body)]
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert run.status == "failed"
    assert run.error.startswith(f"GET {erp_server.url}/stock?limit=1000: {reason}")
    assert len(erp_server.requests) == 1


@pytest.mark.django_db
def test_a_failure_on_a_later_page_keeps_what_earlier_pages_applied(erp_server, fake) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)], [stock("SKU-2", 22, T2)]], "prices": [[]]}

    def responder(request: Recorded):
        if "cursor=stock-2" in request.path:
            return json_response(403, {"error": "forbidden"})
        return fake(request)

    erp_server.responder = responder
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert run.status == "failed"
    assert run.error == f"GET {erp_server.url}/stock?limit=1000&cursor=stock-2: 403 Forbidden"
    assert (run.pages, run.found, run.fixed) == (1, 1, 1)
    assert stored_stock()[("SKU-1", "main")] == 11
    assert stored_stock()[("SKU-2", "main")] == 10
    # Drift was found before the failure, so it is announced, with the reason
    assert "error:    GET" in Notification.objects.get().body


@pytest.mark.django_db
def test_a_read_timeout_is_retried_then_fails_the_run(erp_server, fake, settings) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    settings.RECONCILE_TIMEOUT = (2.0, 0.3)
    settings.RECONCILE_MAX_RETRIES = 1
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[]]}
    fake.delay = 3.0
    started = time.monotonic()
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    elapsed = time.monotonic() - started
    fake.release.set()
    assert run.status == "failed"
    assert run.error == (
        f"GET {erp_server.url}/stock?limit=1000: no answer within the read timeout of 0.3 s "
        "(after 1 retries)"
    )
    assert ERP_TOKEN not in run.error
    assert elapsed < 2.5  # the timeout, not the ERP's delay, decided
    wait_until(lambda: len(erp_server.requests) == 2, timeout=5, what="the retried request")
    assert stored_stock()[("SKU-1", "main")] == 10


@pytest.mark.django_db
def test_an_unreachable_erp_fails_the_run_after_retries(settings) -> None:
    from tests.support.redis_server import free_port

    connector = make_connector(f"http://127.0.0.1:{free_port()}")
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert run.status == "failed"
    assert run.error.startswith(f"GET {connector.erp_url}/stock?limit=1000: connection failed")
    assert "(after 2 retries): " in run.error
    assert "Connection refused" in run.error


# -- one run at a time, and skipped connectors ----------------------------------------------
@pytest.mark.django_db
def test_a_second_start_while_one_runs_is_refused_and_an_abandoned_run_is_replaced(
    erp_server, fake, settings
) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[]], "prices": [[]]}
    running = ReconciliationRun.objects.create(connector=connector, trigger="schedule")
    # A live run (recent heartbeat) refuses a second start, recording nothing
    with pytest.raises(ReconciliationAlreadyRunning) as refused:
        reconcile_connector(connector_id=connector.pk, trigger="command")
    assert refused.value.run.pk == running.pk
    assert f"run {running.pk} of connector acme is already running" in str(refused.value)
    assert ReconciliationRun.objects.count() == 1
    assert erp_server.requests == []
    # One without progress for longer than RECONCILE_STALE_SECONDS is taken as abandoned
    ReconciliationRun.objects.filter(pk=running.pk).update(
        heartbeat_at=datetime.now(UTC) - timedelta(seconds=settings.RECONCILE_STALE_SECONDS + 1)
    )
    run = reconcile_connector(connector_id=connector.pk, trigger="command")
    assert run.status == "completed"
    running.refresh_from_db()
    assert running.status == "failed"
    assert running.error.startswith("abandoned: no progress")


@pytest.mark.django_db
def test_disabled_connectors_and_those_without_an_erp_url_are_skipped() -> None:
    disabled = connector_save(slug="off", erp_url="http://127.0.0.1:9").connector
    Connector.objects.filter(pk=disabled.pk).update(enabled=False)
    no_url = connector_save(slug="nourl").connector
    with pytest.raises(ReconciliationNotPossible, match="connector off is disabled"):
        reconcile_connector(connector_id=disabled.pk, trigger="command")
    with pytest.raises(ReconciliationNotPossible, match="connector nourl has no ERP URL"):
        reconcile_connector(connector_id=no_url.pk, trigger="command")
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_reconcile_all_queues_one_run_per_enabled_connector_with_an_erp_url() -> None:
    acme = connector_save(slug="acme", erp_url="http://127.0.0.1:9").connector
    globex = connector_save(slug="globex", erp_url="http://127.0.0.1:9").connector
    connector_save(slug="nourl")
    off = connector_save(slug="off", erp_url="http://127.0.0.1:9").connector
    Connector.objects.filter(pk=off.pk).update(enabled=False)
    assert reconciliation_queue_all() == 2
    messages = OutboxMessage.objects.filter(task_name="erp_connectors.reconcile_connector")
    assert sorted((m.queue, m.kwargs["connector_id"], m.kwargs["trigger"]) for m in messages) == [
        ("low", acme.pk, "schedule"),
        ("low", globex.pk, "schedule"),
    ]


# -- admin ----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_admin_action_queues_a_run_through_the_outbox(admin_client) -> None:
    acme = connector_save(slug="acme", erp_url="http://127.0.0.1:9").connector
    nourl = connector_save(slug="nourl").connector
    response = admin_client.post(
        reverse("admin:erp_connectors_connector_changelist"),
        {"action": "reconcile_now", "_selected_action": [acme.pk, nourl.pk]},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Reconciliation queued for acme" in page
    assert "Not queued: connector nourl has no ERP URL" in page
    [message] = OutboxMessage.objects.filter(task_name="erp_connectors.reconcile_connector")
    assert (message.queue, message.kwargs) == ("low", {"connector_id": acme.pk, "trigger": "admin"})


@pytest.mark.django_db
def test_the_admin_lists_runs_read_only_with_their_failed_items(admin_client) -> None:
    acme = connector_save(slug="acme", erp_url="http://127.0.0.1:9").connector
    run = ReconciliationRun.objects.create(
        connector=acme,
        trigger="admin",
        status="completed",
        found=3,
        fixed=1,
        failed=1,
        errors=[{"kind": "stock", "sku": "NOPE-1", "code": "unknown_sku", "message": "no such"}],
    )
    listing = admin_client.get(
        reverse("admin:erp_connectors_reconciliationrun_changelist"), {"status__exact": "completed"}
    )
    assert listing.status_code == 200
    assert f"/admin/erp_connectors/reconciliationrun/{run.pk}/change/" in listing.content.decode()
    detail = admin_client.get(
        reverse("admin:erp_connectors_reconciliationrun_change", args=[run.pk])
    )
    body = detail.content.decode()
    assert detail.status_code == 200
    assert "<td>NOPE-1</td><td>unknown_sku</td>" in body
    assert 'name="_save"' not in body  # read-only
    add = admin_client.get(reverse("admin:erp_connectors_reconciliationrun_add"))
    assert add.status_code == 403


# -- the command ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_command_prints_the_run_and_its_counts(erp_server, fake) -> None:
    seed_catalog()
    make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2), stock("NOPE", 1, T2)]], "prices": [[]]}
    out = StringIO()
    call_command("reconcile", "acme", stdout=out)
    run = ReconciliationRun.objects.get()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"reconciliation run {run.pk} of acme: completed"
    assert lines[1] == "found 2, fixed 1, in sync 0, failed 1"
    assert lines[2].startswith("  stock NOPE: unknown_sku: ")
    assert run.trigger == "command"


@pytest.mark.django_db
def test_the_command_fails_clearly(erp_server, fake) -> None:
    with pytest.raises(CommandError, match="no connector with slug 'ghost'"):
        call_command("reconcile", "ghost")
    connector_save(slug="nourl")
    with pytest.raises(CommandError, match="connector nourl has no ERP URL"):
        call_command("reconcile", "nourl")
    make_connector(erp_server.url)
    fake.script = [json_response(401, {})]
    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("reconcile", "acme", stdout=out)
    run = ReconciliationRun.objects.get()
    assert str(failed.value) == (
        f"reconciliation run {run.pk} failed: GET {erp_server.url}/stock?limit=1000: "
        "401 Unauthorized"
    )
    assert out.getvalue().startswith(f"reconciliation run {run.pk} of acme: failed\n")


def test_the_command_exits_zero_on_success_and_non_zero_on_failure(
    transactional_db, erp_server, fake
) -> None:
    # The real command line, in its own process, on the test database
    make_connector(erp_server.url)
    fake.pages = {"stock": [[]], "prices": [[]]}
    manage = [sys.executable, str(BASE_DIR / "manage.py"), "reconcile"]
    ok = subprocess.run(
        [*manage, "acme"], env=process_env(), capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    run = ReconciliationRun.objects.get()
    assert ok.stdout.splitlines()[0] == f"reconciliation run {run.pk} of acme: completed"
    unknown = subprocess.run(
        [*manage, "ghost"], env=process_env(), capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 1
    assert "no connector with slug 'ghost'" in unknown.stderr


# -- the schedule ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_nightly_schedule_is_installed_once_for_the_low_queue() -> None:
    task = PeriodicTask.objects.get(name="Nightly ERP reconciliation")
    assert (task.task, task.queue, task.enabled) == ("erp_connectors.reconcile_all", "low", True)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("0", "3", "*")
    assert (crontab.day_of_month, crontab.month_of_year, str(crontab.timezone)) == ("*", "*", "UTC")
    # Running the migration again keeps the one entry, with an operator's changes
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)
    migration = importlib.import_module("erp_connectors.migrations.0004_nightly_reconciliation")
    migration.schedule(django_apps, None)
    assert PeriodicTask.objects.filter(task="erp_connectors.reconcile_all").count() == 1
    assert PeriodicTask.objects.get(pk=task.pk).enabled is False


def test_beats_clean_up_of_expired_results_runs_on_the_low_queue() -> None:
    # django-celery-beat installs it with no queue of its own, so the routes decide: `low`,
    # with the other clean-up and bulk work (CONTRACT §5)
    assert celery_app.amqp.router.route({}, "celery.backend_cleanup")["queue"].name == "low"


# -- through a real worker ------------------------------------------------------------------
@pytest.mark.integration
def test_a_queued_run_is_done_by_a_worker_on_the_low_queue(
    transactional_db, erp_server, fake, settings, start_worker
) -> None:
    seed_catalog()
    connector = make_connector(erp_server.url)
    fake.pages = {"stock": [[stock("SKU-1", 11, T2)]], "prices": [[price("SKU-2", "2", T2)]]}
    # Only a worker for `low`: the run can only complete if it was routed there
    start_worker("low")
    settings.OUTBOX_FAST_PATH = True
    reconciliation_queue(connector=connector, trigger="admin")
    run = wait_until(
        lambda: ReconciliationRun.objects.filter(status="completed").first(),
        timeout=60,
        what="the run to complete",
    )
    assert (run.trigger, run.found, run.fixed, run.failed) == ("admin", 2, 2, 0)
    assert stored_stock()[("SKU-1", "main")] == 11
    assert stored_prices()[("SKU-2", "EUR")] == Decimal("2")
    assert {r.headers["Authorization"] for r in erp_server.requests} == {f"Bearer {ERP_TOKEN}"}
