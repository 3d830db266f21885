"""The admin's import pages beyond the stock ModelAdmin: the upload form, the live progress
document the run card polls (the API's status document plus what the card shows), and the
streamed error report.

Reads only; every write goes through imports.services.
"""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from django.template.defaultfilters import date as format_date
from django.utils import timezone
from django.utils.formats import number_format

from erp_connectors.models import Connector

from .api import run_status_document
from .models import ImportRun
from .parsing import CsvFormatError, iter_error_report, resolve_encoding
from .selectors import run_row_errors

# The run card shows this many row errors inline; the report has them all.
INLINE_ERRORS = 20
# Retry is offered for these statuses when rows failed (imports.services.import_retry_failed).
RETRYABLE_STATUSES = (ImportRun.Status.COMPLETED_WITH_ERRORS, ImportRun.Status.FAILED)
# A run that ends in these statuses without data rows has nothing left: its bar is full.


def megabytes(size: int) -> str:
    """Render a byte count as the MB figure the upload form and its errors show."""
    return f"{round(size / (1024 * 1024), 3):g} MB"


def upload_too_large_message() -> str:
    return f"The file is larger than the limit of {megabytes(settings.IMPORT_MAX_UPLOAD_BYTES)}."


class ImportUploadForm(forms.Form):
    """What staff give when they upload a catalog CSV (CONTRACT §4)."""

    file = forms.FileField(
        label="CSV file",
        # Checked in clean_file, so an upload cut off at the size limit says so instead of
        # "This field is required".
        required=False,
        widget=forms.FileInput(attrs={"accept": ".csv,.txt,text/csv"}),
    )
    encoding = forms.CharField(
        required=False,
        max_length=40,
        help_text="Leave empty for UTF-8 (with or without BOM); otherwise e.g. cp1252 or latin-1.",
    )
    force = forms.BooleanField(
        required=False,
        label="Import again",
        help_text="Import even if the same file was uploaded in the last 24 hours.",
    )
    connector = forms.ModelChoiceField(
        queryset=Connector.objects.order_by("slug"),
        required=False,
        help_text="Optional: the ERP this file comes from.",
    )

    def __init__(self, *args: Any, upload_too_large: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upload_too_large = upload_too_large
        limit = megabytes(settings.IMPORT_MAX_UPLOAD_BYTES)
        self.fields["file"].help_text = f"One header row; sku required. Up to {limit}."

    def clean_file(self) -> Any:
        if self.upload_too_large:
            raise forms.ValidationError(upload_too_large_message(), code="too_large")
        upload = self.cleaned_data.get("file")
        if not upload:
            raise forms.ValidationError("Choose a CSV file to upload.", code="required")
        return upload

    def clean_encoding(self) -> str:
        encoding = self.cleaned_data.get("encoding", "").strip()
        if encoding:
            try:
                resolve_encoding(encoding)
            except CsvFormatError as exc:
                raise forms.ValidationError(exc.message, code="encoding") from None
        return encoding


# --------------------------------------------------------------------------- progress


def percent_display(percent: float) -> str:
    """42 -> '42 %' (and 42.5 -> '42.5 %', should the API ever give decimals)."""
    return f"{percent:g} %"


def run_rate(run: ImportRun) -> tuple[float | None, int | None]:
    """Rows per second so far and, while rows remain, the seconds still to go."""
    if not (run.started_at and run.progress_at and run.processed_rows):
        return None, None
    elapsed = (run.progress_at - run.started_at).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = run.processed_rows / elapsed
    remaining = run.total_rows - run.processed_rows
    eta = math.ceil(remaining / rate) if run.is_open and remaining > 0 else None
    return rate, eta


def duration_display(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _local(value: Any) -> str:
    return format_date(timezone.localtime(value), "DATETIME_FORMAT") if value else "—"


def run_progress_document(run: ImportRun, request: HttpRequest) -> dict[str, Any]:
    """The run's status as the run card polls it.

    The API's status document (CONTRACT §4, GET /api/v1/imports/<id>) with what the card
    adds: rate and ETA, the first row errors, which actions make sense now, and display
    strings, formatted once, here, so that the page's script only copies them in.
    """
    document = run_status_document(run, request)
    rate, eta = run_rate(run)
    first_errors = []
    if run.failed_rows:
        fields = ("line", "sku", "column", "code", "message")
        rows = run.row_errors.order_by("line").values_list(*fields)[:INLINE_ERRORS]
        first_errors = [dict(zip(fields, row, strict=True)) for row in rows]
    return {
        **document,
        "rows_per_second": round(rate, 1) if rate is not None else None,
        "eta_seconds": eta,
        "finished": not run.is_open,
        "can_retry": run.status in RETRYABLE_STATUSES and run.failed_rows > 0,
        "can_cancel": run.is_open,
        "first_errors": first_errors,
        "display": {
            "status": run.get_status_display(),
            "percent": percent_display(document["percent"]),
            "batches": f"{run.batches_done} / {run.batch_count}",
            "rows_per_second": (
                "—" if rate is None else number_format(rate, decimal_pos=1, force_grouping=True)
            ),
            "eta": "—" if eta is None else duration_display(eta),
            "started_at": _local(run.started_at),
            "finished_at": _local(run.finished_at),
        },
    }


# --------------------------------------------------------------------------- error report


def error_report_response(run: ImportRun) -> StreamingHttpResponse:
    """Stream `line,sku,column,code,message` for every failed row, formulas neutralised."""
    response = StreamingHttpResponse(
        iter_error_report(run_row_errors(run_id=run.pk)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="import-{run.pk}-errors.csv"'
    return response
