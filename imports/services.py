"""Import runs (CONTRACT §4): upload, plan, process batches, finish, cancel, retry failed rows.

The request path only stores the file and records the run with its start message (outbox).
Workers then:

1. `run_start` (queue default) reads the file once to split it into spans of at most
   IMPORT_BATCH_SIZE records, and records every batch with its message in one transaction.
   Only the spans are kept in memory (one small tuple per 1,000 rows), never the rows.
2. `batch_process` (queue low) re-reads its span, applies it through the catalog services,
   records its row errors and moves the run's counters, all in one transaction. Batches of
   a run run side by side, one per pool process of `worker-low`: the catalog services lock
   products in one order, so they queue rather than deadlock where their rows meet. A batch
   marked done makes a re-delivered message a no-op, so nothing is counted twice; a batch
   that finds the run cancelled when it moves the counters rolls back, so a cancel leaves
   exactly the batches committed before it applied.
3. The batch that completes the run records `run_finish` (queue default) in the same
   transaction; that sets the final status and notifies the uploader.

Counters only move by F() increments inside those transactions, so they never go backwards
and `processed = succeeded + failed + skipped` holds at every commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from erp_connectors.models import Connector
from notifications.models import Notification
from notifications.services import notification_create
from syncplatform.outbox.services import outbox_enqueue, outbox_enqueue_many
from syncplatform.retry import PermanentError

from .apply import RowOutcome, RowResult, rows_apply
from .models import ImportBatch, ImportRowError, ImportRun
from .parsing import (
    CatalogRow,
    CsvFormatError,
    RowError,
    iter_line_range,
    plan_batches,
    resolve_encoding,
)
from .uploads import file_store

logger = logging.getLogger(__name__)

START_TASK = "imports.start_run"
BATCH_TASK = "imports.process_batch"
FINISH_TASK = "imports.finish_run"
RETRY_TASK = "imports.retry_failed_rows"


class ImportNotAllowed(Exception):
    """The run is in a state where the asked action makes no sense (the API answers 409)."""


@dataclass(frozen=True)
class ImportCreated:
    run: ImportRun
    duplicate: bool


# --------------------------------------------------------------------------- request path


def import_create(
    *,
    source: IO[bytes],
    filename: str,
    encoding: str = "",
    force: bool = False,
    connector: Connector | None = None,
    uploaded_by: Any = None,
) -> ImportCreated:
    """Store an uploaded file and queue its import; return the run and whether it is a repeat.

    The same content from the same uploader (connector, else user) within the dedup window,
    read with the same encoding, returns the existing run, unless `force` or that run failed
    or was cancelled. Raises CsvFormatError for an unknown encoding and UploadTooLarge over
    IMPORT_MAX_UPLOAD_BYTES, storing nothing in either case.
    """
    encoding = encoding.strip()
    if encoding:
        resolve_encoding(encoding)
    stored = file_store(source, limit=settings.IMPORT_MAX_UPLOAD_BYTES)
    try:
        with transaction.atomic():
            if not force:
                existing = _recent_duplicate(stored.sha256, encoding, connector, uploaded_by)
                if existing is not None:
                    transaction.on_commit(lambda: default_storage.delete(stored.name))
                    return ImportCreated(existing, duplicate=True)
            run = ImportRun.objects.create(
                connector=connector,
                uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
                file=stored.name,
                file_sha256=stored.sha256,
                file_size=stored.size,
                original_filename=filename[:255],
                encoding=encoding,
                force=force,
            )
            outbox_enqueue(
                task_name=START_TASK, kwargs={"run_id": run.pk}, dedup_key=f"import:{run.pk}"
            )
    except BaseException:
        default_storage.delete(stored.name)
        raise
    return ImportCreated(run, duplicate=False)


def _recent_duplicate(
    sha256: str, encoding: str, connector: Connector | None, user: Any
) -> ImportRun | None:
    since = timezone.now() - timedelta(seconds=settings.IMPORT_DEDUP_WINDOW_SECONDS)
    runs = ImportRun.objects.filter(file_sha256=sha256, created_at__gte=since)
    if connector is not None:
        # Serialises concurrent uploads of one connector, so two copies make one run.
        Connector.objects.select_for_update().filter(pk=connector.pk).exists()
        runs = runs.filter(connector=connector)
    elif getattr(user, "pk", None):
        runs = runs.filter(connector__isnull=True, uploaded_by=user)
    else:
        return None
    # Uploading again after a cancel or a failure (e.g. with the encoding the error advises)
    # asks for a new attempt, not for the run that went wrong.
    runs = runs.exclude(status__in=(ImportRun.Status.CANCELLED, ImportRun.Status.FAILED))
    # The same bytes read with another codec are other rows. Compared as codecs, so that
    # "CP1252" repeats "cp1252"; the candidates are the few recent runs of this content.
    codec = resolve_encoding(encoding or None)
    for run in runs.order_by("-created_at"):
        if resolve_encoding(run.encoding or None) == codec:
            return run
    return None


def import_cancel(*, run_id: int) -> ImportRun:
    """Stop the run: batches not yet started do nothing; finished batches stay applied."""
    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        if not run.is_open:
            raise ImportNotAllowed(f"the run is already {run.status}")
        run.status = ImportRun.Status.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _notify_uploader(run)
    return run


def import_retry_failed(*, run_id: int) -> ImportRun:
    """Queue the run's failed rows again; only those lines are re-read and re-applied."""
    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        retryable = (ImportRun.Status.COMPLETED_WITH_ERRORS, ImportRun.Status.FAILED)
        if run.status not in retryable or run.failed_rows == 0:
            raise ImportNotAllowed(
                "only a finished run with failed rows can be retried"
                f" (status {run.status}, {run.failed_rows} failed rows)"
            )
        run.status = ImportRun.Status.RUNNING
        run.retry_count += 1
        run.finished_at = None
        run.save(update_fields=["status", "retry_count", "finished_at"])
        outbox_enqueue(
            task_name=RETRY_TASK,
            kwargs={"run_id": run.pk, "retry_pass": run.retry_count},
            dedup_key=f"import:{run.pk}:retry:{run.retry_count}",
        )
    return run


# --------------------------------------------------------------------------- workers


def run_start(*, run_id: int) -> None:
    """Plan the run's batches and queue them. Safe to repeat.

    A repeat after the batches were recorded does nothing. A repeat after a crash between
    marking the run running and recording its batches (planning reads the whole file, so
    that window is wide) plans the run: the batches are recorded once, by one transaction.
    """
    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        if run.status == ImportRun.Status.QUEUED:
            run.status = ImportRun.Status.RUNNING
            run.started_at = run.progress_at = timezone.now()
            run.save(update_fields=["status", "started_at", "progress_at"])
        elif run.status != ImportRun.Status.RUNNING or run.batch_count or run.retry_count:
            return

    try:
        with run.file.open("rb") as stream:
            header, spans = plan_batches(
                stream, encoding=run.encoding or None, batch_size=settings.IMPORT_BATCH_SIZE
            )
            # A list of small tuples (one per batch), so a file that fails to decode on its
            # last line fails before any batch has run: nothing half-imported.
            planned = list(spans)
    except CsvFormatError as exc:
        _fail_run(run_id, exc)
        return

    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        if run.status != ImportRun.Status.RUNNING or run.batch_count:
            return  # cancelled meanwhile
        batches = ImportBatch.objects.bulk_create(
            ImportBatch(
                run=run,
                number=number,
                offset=span.offset,
                first_line=span.first_line,
                last_line=span.last_line,
                row_count=span.count,
            )
            for number, span in enumerate(planned, start=1)
        )
        run.total_rows = sum(span.count for span in planned)
        run.batch_count = len(batches)
        run.last_line = planned[-1].last_line if planned else 0
        run.warnings = header.warnings
        run.save(update_fields=["total_rows", "batch_count", "last_line", "warnings"])
        if not batches:
            _enqueue_finish(run)
            return
        outbox_enqueue_many(
            task_name=BATCH_TASK,
            kwargs_list=({"batch_id": batch.pk} for batch in batches),
            dedup_keys=(f"import:{run.pk}:batch:{batch.number}" for batch in batches),
        )
    logger.info("import %s: %s rows in %s batches", run_id, run.total_rows, len(batches))


def batch_process(*, batch_id: int) -> None:
    """Apply one batch in one transaction: catalog writes, row errors, counters, done mark."""
    with transaction.atomic():
        batch = _lock_batch(batch_id)
        if batch is None or batch.status == ImportBatch.Status.DONE:
            return
        run = ImportRun.objects.get(pk=batch.run_id)
        if run.status != ImportRun.Status.RUNNING:
            return  # cancelled: the remaining batches stop
        with run.file.open("rb") as stream:
            rows, parse_errors = _split(
                _read(
                    lambda: iter_line_range(stream, encoding=run.encoding or None, span=batch.span)
                )
            )
            results = rows_apply(rows, created_at=run.created_at, last_line=run.last_line)
        counts, errors = _tally(results, parse_errors)
        if sum(counts.values()) != batch.row_count:
            raise PermanentError(
                f"batch {batch} read {sum(counts.values())} rows, planned {batch.row_count}"
            )
        ImportRowError.objects.bulk_create(
            ImportRowError(
                run_id=run.pk,
                line=error.line,
                sku=error.sku[:64],
                column=error.column[:32],
                code=error.code[:32],
                message=error.message,
            )
            for error in errors
        )
        batch.status = ImportBatch.Status.DONE
        batch.succeeded_rows = counts[RowOutcome.SUCCEEDED]
        batch.failed_rows = counts[RowOutcome.FAILED]
        batch.skipped_rows = counts[RowOutcome.SKIPPED]
        batch.finished_at = timezone.now()
        batch.save(
            update_fields=["status", "succeeded_rows", "failed_rows", "skipped_rows", "finished_at"]
        )
        moved = ImportRun.objects.filter(pk=run.pk, status=ImportRun.Status.RUNNING).update(
            processed_rows=F("processed_rows") + batch.row_count,
            succeeded_rows=F("succeeded_rows") + batch.succeeded_rows,
            failed_rows=F("failed_rows") + batch.failed_rows,
            skipped_rows=F("skipped_rows") + batch.skipped_rows,
            batches_done=F("batches_done") + 1,
            progress_at=batch.finished_at,
        )
        if not moved:
            # Cancelled while this batch ran (the UPDATE waited for the cancel's lock and saw
            # its status): the batch goes with the rollback, as if it had not started.
            transaction.set_rollback(True)
            return
        # The UPDATE holds the run's row lock until commit, so exactly one batch sees the
        # last count and queues the finish.
        run.refresh_from_db(fields=["batches_done", "batch_count", "status", "retry_count"])
        if run.batches_done == run.batch_count:
            _enqueue_finish(run)


def _lock_batch(batch_id: int) -> ImportBatch | None:
    """Lock one batch row, and only it.

    The model's default ordering goes through the run (`run`, whose own ordering is by
    creation), so a plain select_for_update() would join the run and lock its row as well:
    every batch of a run would then wait for the one before it to commit.
    """
    return (
        ImportBatch.objects.select_for_update(of=("self",)).filter(pk=batch_id).order_by().first()
    )


def failed_rows_retry(*, run_id: int, retry_pass: int) -> None:
    """Re-apply the run's failed rows, one transaction per batch that has any.

    Each error row records the pass that last tried it, so a re-delivered message resumes
    where the killed one stopped and never tries a row twice in one pass.
    """
    for batch_id in _batches_with_pending_rows(run_id, retry_pass):
        _retry_batch(batch_id, retry_pass)
    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        if run.status == ImportRun.Status.RUNNING and run.retry_count == retry_pass:
            _enqueue_finish(run)


def _batches_with_pending_rows(run_id: int, retry_pass: int) -> list[int]:
    """Return the ids of the batches holding rows this pass has yet to try, in file order.

    Walks the pending lines and the batch spans side by side, both sorted, so a run with a
    million failed rows costs two streamed queries, not one query per batch.
    """
    spans = (
        ImportBatch.objects.filter(run_id=run_id)
        .order_by("first_line")
        .values_list("pk", "last_line")
        .iterator(chunk_size=2000)
    )
    lines = (
        ImportRowError.objects.filter(run_id=run_id, retry_pass__lt=retry_pass)
        .order_by("line")
        .values_list("line", flat=True)
        .iterator(chunk_size=10_000)
    )
    found: list[int] = []
    span = next(spans, None)
    for line in lines:
        while span is not None and span[1] < line:
            span = next(spans, None)
        if span is None:
            break
        if not found or found[-1] != span[0]:
            found.append(span[0])
    return found


def _retry_batch(batch_id: int, retry_pass: int) -> None:
    with transaction.atomic():
        batch = _lock_batch(batch_id)
        if batch is None:
            return
        run = ImportRun.objects.get(pk=batch.run_id)
        if run.status != ImportRun.Status.RUNNING or run.retry_count != retry_pass:
            return
        pending = {
            error.line: error
            # of=self: the default ordering would join (and so lock) the run, as in _lock_batch.
            for error in ImportRowError.objects.select_for_update(of=("self",))
            .order_by("line")
            .filter(
                run_id=run.pk,
                retry_pass__lt=retry_pass,
                line__gte=batch.first_line,
                line__lte=batch.last_line,
            )
        }
        if not pending:
            return
        with run.file.open("rb") as stream:
            rows, parse_errors = _split(
                _read(
                    lambda: iter_line_range(
                        stream, encoding=run.encoding or None, span=batch.span, lines=pending
                    )
                )
            )
            results = rows_apply(rows, created_at=run.created_at, last_line=run.last_line)
        counts, errors = _tally(results, parse_errors)
        still_failing = {error.line: error for error in errors if error.line in pending}
        fixed = [r.line for r in results if r.outcome != RowOutcome.FAILED and r.line in pending]
        ImportRowError.objects.filter(run_id=run.pk, line__in=fixed).delete()
        for line, error in still_failing.items():
            row = pending[line]
            row.sku, row.column, row.code = error.sku[:64], error.column[:32], error.code[:32]
            row.message, row.retry_pass = error.message, retry_pass
        ImportRowError.objects.bulk_update(
            [pending[line] for line in still_failing],
            ["sku", "column", "code", "message", "retry_pass"],
        )
        batch_fixed = {
            "succeeded_rows": counts[RowOutcome.SUCCEEDED],
            "skipped_rows": counts[RowOutcome.SKIPPED],
        }
        ImportBatch.objects.filter(pk=batch.pk).update(
            succeeded_rows=F("succeeded_rows") + batch_fixed["succeeded_rows"],
            skipped_rows=F("skipped_rows") + batch_fixed["skipped_rows"],
            failed_rows=F("failed_rows") - len(fixed),
        )
        moved = ImportRun.objects.filter(
            pk=run.pk, status=ImportRun.Status.RUNNING, retry_count=retry_pass
        ).update(
            succeeded_rows=F("succeeded_rows") + batch_fixed["succeeded_rows"],
            skipped_rows=F("skipped_rows") + batch_fixed["skipped_rows"],
            failed_rows=F("failed_rows") - len(fixed),
            progress_at=timezone.now(),
        )
        if not moved:
            transaction.set_rollback(True)  # cancelled meanwhile, as in batch_process


def run_finish(*, run_id: int) -> None:
    """Set the final status from the counters and tell the uploader. Idempotent."""
    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        if run.status != ImportRun.Status.RUNNING:
            return
        if run.failed_rows == 0:
            run.status = ImportRun.Status.COMPLETED
        elif run.succeeded_rows + run.skipped_rows == 0:
            run.status = ImportRun.Status.FAILED
        else:
            run.status = ImportRun.Status.COMPLETED_WITH_ERRORS
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _notify_uploader(run)


def _fail_run(run_id: int, exc: CsvFormatError) -> None:
    with transaction.atomic():
        run = ImportRun.objects.select_for_update().get(pk=run_id)
        if run.status != ImportRun.Status.RUNNING:
            return
        run.status = ImportRun.Status.FAILED
        run.error = exc.message
        if exc.line is not None and not exc.message.startswith(f"line {exc.line}"):
            run.error = f"line {exc.line}: {exc.message}"
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        _notify_uploader(run)
    logger.info("import %s failed: %s", run_id, run.error)


def _enqueue_finish(run: ImportRun) -> None:
    outbox_enqueue(
        task_name=FINISH_TASK,
        kwargs={"run_id": run.pk},
        dedup_key=f"import:{run.pk}:finish:{run.retry_count}",
    )


def _read(
    open_rows: Any,
) -> Iterator[CatalogRow | RowError]:
    """Turn a file that no longer reads as planned into a permanent error (dead letter)."""
    try:
        yield from open_rows()
    except CsvFormatError as exc:
        raise PermanentError(f"the stored file no longer reads as planned: {exc}") from exc


def _split(items: Iterator[CatalogRow | RowError]) -> tuple[list[CatalogRow], list[RowError]]:
    rows: list[CatalogRow] = []
    errors: list[RowError] = []
    for item in items:
        (errors if isinstance(item, RowError) else rows).append(item)
    return rows, errors


def _tally(
    results: list[RowResult], parse_errors: list[RowError]
) -> tuple[dict[RowOutcome, int], list[RowError]]:
    counts = dict.fromkeys(RowOutcome, 0)
    counts[RowOutcome.FAILED] = len(parse_errors)
    errors = list(parse_errors)
    for result in results:
        counts[result.outcome] += 1
        if result.error is not None:
            errors.append(result.error)
    return counts, errors


def _notify_uploader(run: ImportRun) -> None:
    """Tell whoever uploaded the file how the run ended (in the caller's transaction).

    A staff member who uploaded in the admin, also on behalf of a connector, is the uploader;
    the connector's notify_email is for uploads made with its API token (no user).
    """
    if run.uploaded_by_id:
        recipient = run.uploaded_by.email
    elif run.connector_id:
        recipient = run.connector.notify_email
    else:
        recipient = ""
    if not recipient:
        return
    name = run.original_filename or f"import #{run.pk}"
    counts = {
        "total_rows": run.total_rows,
        "processed_rows": run.processed_rows,
        "succeeded_rows": run.succeeded_rows,
        "failed_rows": run.failed_rows,
        "skipped_rows": run.skipped_rows,
    }
    lines = [
        f"Import #{run.pk} of {name}: {run.get_status_display().lower()}.",
        "",
        *(f"{key.replace('_', ' ')}: {value}" for key, value in counts.items()),
    ]
    if run.error:
        lines += ["", f"Error: {run.error}"]
    notification_create(
        channel=Notification.Channel.EMAIL,
        recipient=recipient,
        subject=f"Import #{run.pk} {run.get_status_display().lower()}: {name}",
        body="\n".join(lines),
        dedup_key=f"import:{run.pk}:{run.status}:{run.retry_count}",
        data={"import_id": run.pk, "status": run.status, **counts},
    )
