"""Prometheus metrics, read from the database and Redis at scrape time.

State (backlogs, queues, runs) is read where it lives, and counts of what happened
(webhook answers, event outcomes, task durations) are totalled in Redis by every process
(syncplatform/counters.py), so the numbers are right no matter which process or host did
the work, and need no multiprocess registry.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from django.db.models import Count, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from syncplatform import counters
from syncplatform.deadletters.models import DeadLetter
from syncplatform.outbox.models import OutboxMessage
from syncplatform.queue_state import BrokerUnavailable, queue_states


class PlatformCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._outbox()
        yield from self._dead_letters()
        yield from self._queues()
        yield from self._imports()
        yield from self._shared_counters()

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
            for state in queue_states():
                depth.add_metric([state.name], state.depth)
                age.add_metric([state.name], state.oldest_age)
            up.add_metric([], 1)
        except BrokerUnavailable:
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

    def _shared_counters(self) -> Iterator[Metric]:
        """Counts and durations added up by every process (syncplatform/counters.py)."""
        try:
            totals = counters.totals()
        except redis.RedisError:
            return  # syncplatform_broker_up says so
        for definition in counters.REGISTRY:
            if isinstance(definition, counters.Histogram):
                yield _histogram(definition, totals)
                continue
            family = CounterMetricFamily(
                definition.name, definition.documentation, labels=definition.labels
            )
            counted = dict.fromkeys(definition.known, 0.0) | totals.get(definition.name, {})
            for values, total in sorted(counted.items()):
                family.add_metric(list(values), total)
            yield family


def _histogram(
    definition: counters.Histogram, totals: dict[str, dict[tuple[str, ...], float]]
) -> Metric:
    family = HistogramMetricFamily(
        definition.name, definition.documentation, labels=definition.labels
    )
    buckets = totals.get(definition.name, {})
    sums = totals.get(definition.name + "_sum", {})
    for values, count in sorted(totals.get(definition.name + "_count", {}).items()):
        cumulative = 0.0
        series: list[tuple[str, float]] = []
        for bound in definition.buckets:
            text = counters.bound_text(bound)
            cumulative += buckets.get((*values, text), 0.0)
            series.append((text, cumulative))
        # The count is flushed with its bucket in one pipeline; +Inf is the count itself.
        series[-1] = ("+Inf", count)
        family.add_metric(list(values), series, sums.get(values, 0.0))
    return family


registry = CollectorRegistry(auto_describe=False)
registry.register(PlatformCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
