"""manage.py simulate_erp against a real gunicorn on the test database, over real HTTP."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db.models import Sum

from catalog.models import Product
from catalog.services import ProductItem, product_upsert
from erp_connectors.models import InboundEvent
from erp_connectors.services import ConnectorCredentials, connector_save
from tests.support.processes import PlatformProcess, process_env
from tests.support.redis_server import free_port
from tests.support.waiting import wait_until

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:  # not listening yet, or still loading the app
        return False


@pytest.fixture
def start_web(transactional_db: None, processes: list[PlatformProcess]) -> Callable[..., str]:
    """Start gunicorn on a free port and return its base URL; killed at teardown."""

    def start(**env: str) -> str:
        port = free_port()
        web = PlatformProcess(
            "web",
            [
                GUNICORN,
                "syncplatform.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
            ],
            process_env(**env),
        )
        processes.append(web.start())
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(url) or not web.alive(), timeout=30, what="gunicorn up")
        assert web.alive(), web.log()
        return url

    return start


@pytest.fixture
def acme(transactional_db: None) -> ConnectorCredentials:
    return connector_save(slug="acme", name="ACME ERP", api_token="spt_simulator_test_token_1")


def simulate(url: str, credentials: ConnectorCredentials, *args: str) -> str:
    out = StringIO()
    try:
        call_command(
            "simulate_erp",
            "acme",
            "--secret",
            credentials.webhook_secret,
            "--url",
            url,
            *args,
            stdout=out,
        )
    except CommandError as exc:
        raise AssertionError(f"{exc}\n{out.getvalue()}") from exc
    return out.getvalue()


def answered(summary: str) -> dict[str, int]:
    """The '  <status> <label>  <count>' lines of the summary, as {"202 accepted": n, …}."""
    return {
        f"{status} {label}": int(count)
        for status, label, count in re.findall(r"^  (\d{3}) (.+?) +(\d+)", summary, re.M)
    }


def planned(summary: str) -> tuple[int, int, int, int]:
    match = re.search(
        r"planned +(\d+) requests: (\d+) events \((\d+) out of order\), (\d+) duplicates", summary
    )
    assert match, summary
    return tuple(int(group) for group in match.groups())  # type: ignore[return-value]


def test_counts_printed_match_what_the_platform_stored(
    start_web: Callable[..., str], acme: ConnectorCredentials
) -> None:
    # Given the platform serving webhooks (no broker publish: nothing is applied here)
    url = start_web(OUTBOX_FAST_PATH="false")

    # When the simulated ERP sends 30 requests, a fifth of them re-deliveries
    summary = simulate(
        url, acme,
        "--events", "30", "--rate", "50", "--concurrency", "4", "--items", "3",
        "--skus", "20", "--duplicates", "0.2", "--out-of-order", "0.2", "--type", "mixed",
        "--seed", "7", "--create-products",
    )  # fmt: skip

    # Then the plan is as asked, and every request was answered 202 or 200 as a duplicate
    requests_, events, out_of_order, duplicates = planned(summary)
    assert (requests_, events, out_of_order, duplicates) == (30, 24, 6, 6)
    assert answered(summary) == {"202 accepted": 24, "200 duplicate": 6}, summary
    assert re.search(r"^latency +p50 [\d.]+ ms", summary, re.M), summary
    assert "products    20 in the pool, 20 created" in summary
    assert Product.objects.filter(sku__startswith="SKU-").count() == 20

    # And the database holds exactly one event per unique webhook-id
    stored = list(InboundEvent.objects.filter(connector=acme.connector).order_by("webhook_id"))
    assert len(stored) == events
    assert {event.status for event in stored} == {"accepted"}

    # And the out-of-order events were stored: each carries an updated_at older than an
    # earlier-sent event's for the same keys
    newest: dict[tuple[str, str], datetime] = {}
    overtaken = 0
    for event in stored:  # ids are numbered in sending order
        versions = {
            (item["sku"], item.get("warehouse") or item["currency"]): datetime.fromisoformat(
                item["updated_at"]
            )
            for item in event.payload
        }
        if any(key in newest and at < newest[key] for key, at in versions.items()):
            overtaken += 1
        for key, at in versions.items():
            newest[key] = max(at, newest.get(key, at))
    assert overtaken == out_of_order


def test_wait_reports_how_the_events_were_applied(
    start_web: Callable[..., str],
    acme: ConnectorCredentials,
    start_worker: Callable[..., object],
    start_relay: Callable[..., object],
) -> None:
    # Given the whole pipeline (web, outbox relay, a worker) and 8 of a pool of 12 skus known
    url = start_web(OUTBOX_FAST_PATH="false")
    start_relay()
    start_worker("high")
    product_upsert(
        items=[
            ProductItem(f"SKU-{n:05d}", f"Product {n}", None, datetime(2026, 1, 1, tzinfo=UTC))
            for n in range(1, 9)
        ]
    )

    # When the ERP sends 12 one-item events over that pool and waits for the outcome
    summary = simulate(
        url, acme,
        "--events", "12", "--rate", "0", "--items", "1", "--skus", "12",
        "--duplicates", "0", "--out-of-order", "0", "--seed", "3",
        "--wait", "--token", "spt_simulator_test_token_1", "--wait-timeout", "30",
    )  # fmt: skip

    # Then every event completed, and the summary says what the database says
    events = InboundEvent.objects.filter(connector=acme.connector)
    applied = events.filter(status="applied").count()
    failed = events.filter(status="failed").count()
    assert applied + failed == 12
    assert failed > 0  # the seed sends some of the unknown skus
    items = events.aggregate(
        applied=Sum("applied_items"), stale=Sum("stale_items"), failed=Sum("failed_items")
    )
    assert "completed   12 of 12 events after" in summary, summary
    assert f": {applied} applied, 0 partially_applied, {failed} failed" in summary, summary
    assert (
        f"items       12: {items['applied']} applied, {items['stale']} stale, "
        f"{items['failed']} failed (unknown_sku {items['failed']})"
    ) in summary, summary
    assert re.search(r"^lag +202 -> completed: p50 [\d.]+ ms", summary, re.M), summary


def test_refused_connections_fail_the_run(acme: ConnectorCredentials) -> None:
    # Given nothing listening on the port
    url = f"http://127.0.0.1:{free_port()}"

    # When the simulator sends, then it reports the errors and exits non-zero
    out = StringIO()
    with pytest.raises(CommandError, match="2 requests got no answer"):
        call_command("simulate_erp", "acme", "--secret", acme.webhook_secret, "--url", url,
                     "--events", "2", "--rate", "0", stdout=out)  # fmt: skip
    assert "connection errors             2  e.g. ConnectionError: [Errno 111]" in out.getvalue()
