"""CSV import runs (CONTRACT §4): the uploaded file, its batches and the rows that failed.

Counters are only ever moved by the batch that processed the rows, with F() expressions in the
batch's own transaction, so they add up at every instant and never go backwards.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from erp_connectors.models import Connector

from .parsing import RecordSpan


class ImportRun(models.Model):
    """One uploaded file and how importing it goes."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINISHED_STATUSES = (
        Status.COMPLETED,
        Status.COMPLETED_WITH_ERRORS,
        Status.FAILED,
        Status.CANCELLED,
    )

    # None: uploaded by staff without naming a connector.
    connector = models.ForeignKey(
        Connector, on_delete=models.PROTECT, null=True, blank=True, related_name="imports"
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Stored under a generated name; the uploader's file name is kept for display only.
    file = models.FileField(upload_to="imports/", max_length=255)
    file_sha256 = models.CharField(max_length=64)
    file_size = models.PositiveBigIntegerField(default=0)
    original_filename = models.CharField(max_length=255, blank=True)
    # As requested by the uploader; empty means UTF-8 (with or without BOM).
    encoding = models.CharField(max_length=40, blank=True)
    # The uploader asked to import again a file already imported within the dedup window.
    force = models.BooleanField(default=False)

    status = models.CharField(
        max_length=24, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    succeeded_rows = models.PositiveIntegerField(default=0)
    failed_rows = models.PositiveIntegerField(default=0)
    skipped_rows = models.PositiveIntegerField(default=0)
    batch_count = models.PositiveIntegerField(default=0)
    # The line on which the file's last record starts (0 until planned). Rows without an
    # updated_at are versioned from it, so that the later of two such rows wins (apply.py).
    last_line = models.PositiveIntegerField(default=0)
    batches_done = models.PositiveIntegerField(default=0)
    # How many times the failed rows were queued again; each retry pass has this number.
    retry_count = models.PositiveIntegerField(default=0)
    # Header warnings, e.g. ignored unknown columns.
    warnings = models.JSONField(default=list, blank=True)
    # Why the run failed as a whole (a file that cannot be read at all).
    error = models.TextField(blank=True)

    # Not auto_now_add: it is also the default updated_at of rows that give none.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the counters last moved: for rows/s, the ETA and the no-progress alert.
    progress_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [
            # The dedup check: same uploader, same content, recent.
            models.Index(
                fields=["connector", "file_sha256", "created_at"], name="imports_run_dedup_idx"
            ),
            models.Index(fields=["created_at"], name="imports_run_created_idx"),
            # Metrics and the no-progress alert look at runs not yet finished.
            models.Index(
                fields=["progress_at"],
                condition=Q(status__in=["queued", "running"]),
                name="imports_run_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Import #{self.pk} ({self.original_filename or self.file.name})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class ImportBatch(models.Model):
    """A span of at most IMPORT_BATCH_SIZE records, processed in one transaction.

    A batch marked done is what makes a re-delivered batch message a no-op.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()  # 1-based, in file order
    # The RecordSpan from planning: where to seek and how many records to read.
    offset = models.PositiveBigIntegerField()
    first_line = models.PositiveIntegerField()
    last_line = models.PositiveIntegerField()
    row_count = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    succeeded_rows = models.PositiveIntegerField(default=0)
    failed_rows = models.PositiveIntegerField(default=0)
    skipped_rows = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("run", "number")
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="imports_batch_run_number_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.number} (lines {self.first_line}-{self.last_line})"

    @property
    def span(self) -> RecordSpan:
        return RecordSpan(self.offset, self.first_line, self.last_line, self.row_count)


class ImportRowError(models.Model):
    """One data row that could not be applied, as in the error report. One per row."""

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="row_errors")
    line = models.PositiveIntegerField()  # physical line where the record starts; header = 1
    sku = models.CharField(max_length=64, blank=True)
    column = models.CharField(max_length=32, blank=True)
    code = models.CharField(max_length=32)
    message = models.TextField()
    # The retry pass that last tried this row (0: the first import). A pass handles the rows
    # below its number, so a redelivered pass never tries a row twice.
    retry_pass = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("run", "line")
        constraints = [
            # Also the index the report, the run card and retries read by.
            models.UniqueConstraint(fields=["run", "line"], name="imports_rowerror_run_line_uniq")
        ]

    def __str__(self) -> str:
        return f"line {self.line}: {self.code}"
