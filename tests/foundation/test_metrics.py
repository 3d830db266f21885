"""GET /metrics as a Prometheus scraper reads it."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imports.models import ImportRun


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def import_run(status: str, succeeded: int, failed: int, skipped: int) -> ImportRun:
    return ImportRun.objects.create(
        file="imports/x.csv",
        file_sha256="0" * 64,
        status=status,
        total_rows=succeeded + failed + skipped,
        processed_rows=succeeded + failed + skipped,
        succeeded_rows=succeeded,
        failed_rows=failed,
        skipped_rows=skipped,
    )


@pytest.mark.django_db
def test_import_runs_and_their_rows_are_counted_by_status_and_outcome(client, broker):
    import_run(ImportRun.Status.COMPLETED, 900, 0, 100)
    import_run(ImportRun.Status.COMPLETED_WITH_ERRORS, 40, 7, 3)
    import_run(ImportRun.Status.RUNNING, 12, 1, 0)

    samples = scrape(client)

    def rows(outcome: str) -> float:
        return samples[("syncplatform_import_rows", (("outcome", outcome),))]

    def runs(status: str) -> float:
        return samples[("syncplatform_import_runs", (("status", status),))]

    assert (rows("succeeded"), rows("failed"), rows("skipped")) == (952, 8, 103)
    assert runs("completed") == 1
    assert runs("completed_with_errors") == 1
    assert runs("running") == 1
    assert runs("queued") == 0  # every status is present, zero included
    assert samples[("syncplatform_broker_up", ())] == 1


@pytest.mark.django_db
def test_with_no_imports_the_counts_are_zero(client, broker):
    samples = scrape(client)
    assert samples[("syncplatform_import_rows", (("outcome", "failed"),))] == 0
    assert samples[("syncplatform_import_runs", (("status", "failed"),))] == 0
