"""/metrics counts webhook answers, event outcomes and task durations (CONTRACT §6).

The counts come from other processes (gunicorn answers, a worker applies), so the test
reads them as a Prometheus scraper would, from any web instance, once they have arrived.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from django.db import transaction
from prometheus_client.parser import text_string_to_metric_families

from catalog.services import ProductItem, product_upsert
from erp_connectors.models import InboundEvent
from erp_connectors.services import ConnectorCredentials, connector_save
from tests.support.waiting import wait_until

from .conftest import signed_headers, stock_body

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def erp(transactional_db) -> ConnectorCredentials:
    with transaction.atomic():
        product_upsert(items=[ProductItem("A", "A", True, datetime(2026, 1, 1, tzinfo=UTC))])
        return connector_save(slug="acme", name="ACME ERP")


def scrape(client, since: Samples | None = None) -> Samples:
    """The samples of /metrics, less their values in `since` (what happened in between)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    since = since or {}
    return {
        key: sample.value - since.get(key, 0)
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if (key := (sample.name, tuple(sorted(sample.labels.items()))))
    }


def post(web_url: str, erp: ConnectorCredentials, body: dict, webhook_id: str, **kw) -> int:
    text = json.dumps(body)
    headers = signed_headers(kw.get("secret", erp.webhook_secret), webhook_id, text)
    headers["Content-Type"] = "application/json"
    slug = kw.get("slug", "acme")
    url = f"{web_url}/webhooks/erp/{slug}/"
    return requests.post(url, data=text, headers=headers, timeout=30).status_code


def item(sku: str, quantity: int, second: int) -> dict:
    return {
        "sku": sku,
        "warehouse": "main",
        "quantity": quantity,
        "updated_at": f"2026-11-22T10:00:{second:02d}Z",
    }


def test_webhook_answers_event_outcomes_and_task_durations_are_counted(
    client, erp, start_web, start_relay, start_worker
):
    # Given the whole pipeline: gunicorn, the relay and a `high` worker
    web = start_web()
    start_relay()
    start_worker("high")
    # (what earlier tests' processes counted on this broker is not this test's)
    before = scrape(client)
    # When an ERP sends two events, one with an unknown sku, a re-delivery, a badly signed
    # event and one to a connector that does not exist
    newer = stock_body(item("A", 5, 2))
    answers = [
        post(web.url, erp, stock_body(item("A", 3, 1)), "evt-1"),
        post(web.url, erp, newer, "evt-2"),
        post(web.url, erp, newer, "evt-2"),
        post(web.url, erp, stock_body(item("A", 4, 3), item("GHOST", 1, 3)), "evt-3"),
        post(web.url, erp, newer, "evt-4", secret="whsec_" + "A" * 32),
        post(web.url, erp, newer, "evt-5", slug="nosuch"),
    ]
    assert answers == [202, 202, 200, 202, 401, 404]

    # Then /metrics counts the answers by connector and code (none for a made-up slug) ...
    def requests_total(connector: str, code: str) -> float:
        labels = (("code", code), ("connector", connector))
        return samples.get(("syncplatform_webhook_requests_total", labels), 0)

    def total(metric: str) -> float:
        return sum(value for (name, _), value in samples.items() if name == metric)

    def counted() -> bool:
        nonlocal samples
        samples = scrape(client, since=before)
        return (
            total("syncplatform_webhook_requests_total") == len(answers)
            and total("syncplatform_events_completed_total") == 3
        )

    samples: Samples = {}
    wait_until(counted, timeout=60, what="six answers and three events counted")
    assert requests_total("acme", "202") == 3
    assert requests_total("acme", "200") == 1
    assert requests_total("", "404") == 1
    assert not [labels for (name, labels) in samples if ("connector", "nosuch") in labels]

    # ... the events by outcome, their items by outcome ...
    def events(outcome: str) -> float:
        labels = (("outcome", outcome), ("type", "stock.updated"))
        return samples.get(("syncplatform_events_completed_total", labels), 0)

    def items(outcome: str) -> float:
        labels = (("outcome", outcome), ("type", "stock.updated"))
        return samples.get(("syncplatform_event_items_total", labels), 0)

    assert (events("applied"), events("partially_applied"), events("failed")) == (2, 1, 0)
    # evt-3's A is newer than evt-2's unless it was applied first: applied + stale is fixed
    assert items("applied") + items("stale") == 3
    assert items("failed") == 1

    # ... and how long the apply tasks took, as a histogram per task and state
    apply_tasks = {"erp_connectors.apply_event", "erp_connectors.apply_events"}
    apply_runs = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "syncplatform_task_duration_seconds_count"
        and dict(labels)["task"] in apply_tasks
    }
    assert apply_runs, "no apply task duration recorded"
    assert all(("state", "success") in labels for labels in apply_runs)
    labels = next(iter(apply_runs))
    bucket_labels = tuple(sorted((*labels, ("le", "+Inf"))))
    infinite = samples[("syncplatform_task_duration_seconds_bucket", bucket_labels)]
    assert infinite == apply_runs[labels]
    assert samples[("syncplatform_task_duration_seconds_sum", labels)] > 0


@pytest.mark.django_db
def test_every_event_outcome_is_shown_from_the_start(client, broker):
    # An alert on increase(…{outcome="failed"}[5m]) needs the series before the first failure
    samples = scrape(client)
    for event_type in InboundEvent.Type.values:
        for outcome in ("applied", "partially_applied", "failed"):
            labels = (("outcome", outcome), ("type", event_type))
            assert ("syncplatform_events_completed_total", labels) in samples
        for outcome in ("applied", "stale", "failed"):
            labels = (("outcome", outcome), ("type", event_type))
            assert ("syncplatform_event_items_total", labels) in samples
    # the outcomes are the statuses an apply can end in
    assert set(InboundEvent.COMPLETED_STATUSES) == {"applied", "partially_applied", "failed"}
