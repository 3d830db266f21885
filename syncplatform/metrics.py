"""Prometheus metrics, read from the database and the broker at scrape time.

Reading state at scrape time (instead of counting in-process) keeps the numbers right no
matter which process or host did the work, and needs no multiprocess registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncplatform.celery import app as celery_app
from syncplatform.deadletters.models import DeadLetter
from syncplatform.outbox.models import OutboxMessage

PUBLISHED_AT_HEADER = "published_at"


class PlatformCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._outbox()
        yield from self._dead_letters()
        yield from self._queues()
        yield from self._imports()

    def _outbox(self) -> Iterator[Metric]:
        pending = OutboxMessage.objects.filter(published_at__isnull=True).aggregate(
            n=Count("pk"), oldest=Min("created_at")
        )
        backlog = GaugeMetricFamily(
            "syncplatform_outbox_backlog", "Outbox messages not yet published"
        )
        backlog.add_metric([], pending["n"])
        age = GaugeMetricFamily(
            "syncplatform_outbox_oldest_age_seconds", "Age of the oldest unpublished message"
        )
        oldest = pending["oldest"]
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield backlog
        yield age

    def _dead_letters(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "syncplatform_dead_letters", "Dead letters by status", labels=["status"]
        )
        counts = dict(DeadLetter.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in DeadLetter.Status.values:
            family.add_metric([status], counts.get(status, 0))
        yield family

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "syncplatform_queue_depth", "Messages waiting in a queue", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "syncplatform_queue_oldest_age_seconds",
            "Age of the oldest waiting message in a queue",
            labels=["queue"],
        )
        up = GaugeMetricFamily("syncplatform_broker_up", "1 when the broker answered")
        try:
            with celery_app.connection_for_read() as conn:
                client = conn.default_channel.client
                now = time.time()
                for queue in settings.QUEUE_NAMES:
                    depth.add_metric([queue], client.llen(queue))
                    age.add_metric([queue], _oldest_age(client.lindex(queue, -1), now))
            up.add_metric([], 1)
        except Exception:
            up.add_metric([], 0)
        yield depth
        yield age
        yield up

    def _imports(self) -> Iterator[Metric]:
        # Imported here: the foundation's metrics read one app's tables, not the reverse.
        from imports.models import ImportRun

        runs = GaugeMetricFamily(
            "syncplatform_import_runs", "Import runs by status", labels=["status"]
        )
        by_status = dict(ImportRun.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in ImportRun.Status.values:
            runs.add_metric([status], by_status.get(status, 0))
        rows = GaugeMetricFamily(
            "syncplatform_import_rows",
            "Rows of the recorded import runs by outcome (a retried row moves from failed)",
            labels=["outcome"],
        )
        totals = ImportRun.objects.aggregate(
            succeeded=Sum("succeeded_rows"), failed=Sum("failed_rows"), skipped=Sum("skipped_rows")
        )
        for outcome, total in totals.items():
            rows.add_metric([outcome], total or 0)
        yield runs
        yield rows


def _oldest_age(raw: bytes | None, now: float) -> float:
    """Kombu pushes on the left and pops on the right: the right end is the oldest."""
    if not raw:
        return 0.0
    try:
        published = json.loads(raw)["headers"].get(PUBLISHED_AT_HEADER)
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, now - float(published)) if published else 0.0


registry = CollectorRegistry(auto_describe=False)
registry.register(PlatformCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
