"""Import API for ERPs and staff (CONTRACT §4 "CSV imports").

    POST /api/v1/erp/<slug>/imports             upload a file (Bearer token of <slug>)
    GET  /api/v1/imports/<id>                   the run's status document
    GET  /api/v1/imports/<id>/errors.csv        its row errors, streamed
    POST /api/v1/imports/<id>/retry-failed      queue the failed rows again
    POST /api/v1/imports/<id>/cancel            stop the remaining batches

The run endpoints answer the owning connector's Bearer token or a logged-in staff session.
A token that is valid but not the owner's gets 404, as does an unknown id, so nothing tells a
connector which runs exist. Token requests need no CSRF token (a browser never sends one by
itself); session POSTs, which a browser does send by itself, must pass Django's CSRF check.

The views only authenticate, parse and answer; storing, queueing and state changes are in
imports.services. Every error is a JSON body from error_response; nothing is cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.core.serializers.json import DjangoJSONEncoder
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
    UnreadablePostError,
)
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from erp_connectors.http import error_response
from erp_connectors.models import Connector
from erp_connectors.selectors import connector_authenticate

from . import services
from .models import ImportRun
from .parsing import CsvFormatError, iter_error_report
from .selectors import connector_ids_for_token, run_get, run_row_errors
from .uploads import (
    MULTIPART_OVERHEAD_BYTES,
    UploadTooLarge,
    upload_limit_exceeded,
    upload_limit_install,
)

FORCE_VALUES = {"true": True, "1": True, "false": False, "0": False}
# ImportRun.encoding's width; no codec name is longer, and a longer one is refused up front.
ENCODING_MAX_LENGTH = 40
# Statuses in which a run with no data rows has nothing left to do: its bar shows 100 %.
_DONE_STATUSES = frozenset(
    {ImportRun.Status.COMPLETED, ImportRun.Status.COMPLETED_WITH_ERRORS, ImportRun.Status.FAILED}
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_JSON_ENCODER = DjangoJSONEncoder()


# --------------------------------------------------------------------------- upload


@csrf_exempt  # token-authenticated only: no session, so nothing for a forged form to ride on
@never_cache
def upload(request: HttpRequest, slug: str) -> HttpResponse:
    """Store the uploaded CSV and queue its import: 202, or 200 for a recent duplicate.

    The size limit is enforced before the body is read (Content-Length), while Django
    receives it (upload handler) and while it is copied into storage (import_create), so an
    oversized upload is refused without being kept anywhere. A 4xx stores nothing.
    """
    if request.method != "POST":
        return _method_not_allowed(("POST",), "POST a multipart/form-data file")
    connector = _bearer_connector(request, slug)
    if connector is None:
        return _unauthorized()

    limit = settings.IMPORT_MAX_UPLOAD_BYTES
    declared = _declared_length(request)
    if declared is not None and declared > limit + MULTIPART_OVERHEAD_BYTES:
        return _too_large(limit)
    if request.content_type != "multipart/form-data":
        return error_response(
            415, "", "send the file as multipart/form-data, in the form field 'file'"
        )
    # Before anything reads request.POST or request.FILES, which parses the body.
    upload_limit_install(request, limit=limit + MULTIPART_OVERHEAD_BYTES, reset_connection=True)
    try:
        files, form = request.FILES, request.POST
    except RequestDataTooBig:
        return error_response(413, "", "the form fields beside the file are too large")
    except (MultiPartParserError, SuspiciousOperation, BadRequest) as exc:
        return error_response(400, "", f"the multipart body cannot be read: {exc}")
    except UnreadablePostError:
        # The client went away mid-upload; nobody reads this, but it is no server error.
        return error_response(400, "", "the upload was interrupted")
    if upload_limit_exceeded(request):
        return _too_large(limit)

    uploads = files.getlist("file")
    if len(uploads) != 1:
        problem = "is missing" if not uploads else "must be given once"
        return error_response(400, "file", f"the file part 'file' {problem}")
    force = FORCE_VALUES.get(form.get("force", "").strip().lower() or "false")
    if force is None:
        return error_response(400, "force", "force must be one of true, false, 1, 0")
    encoding = form.get("encoding", "").strip()
    if len(encoding) > ENCODING_MAX_LENGTH or not encoding.isprintable():
        return error_response(400, "encoding", "encoding must be a codec name such as cp1252")

    try:
        created = services.import_create(
            source=uploads[0],
            filename=uploads[0].name or "",
            encoding=encoding,
            force=force,
            connector=connector,
        )
    except UploadTooLarge:
        return _too_large(limit)
    except CsvFormatError as exc:
        return error_response(400, "encoding", exc.message)

    run = created.run
    status_url = _absolute_url(request, "imports:run", run)
    if created.duplicate:
        # The existing run as GET shows it, plus what a 202 would have said.
        document = run_status_document(run, request)
        return JsonResponse({**document, "status_url": status_url, "duplicate": True})
    return JsonResponse(
        {"id": run.pk, "status": run.status, "status_url": status_url},
        status=202,
        headers={"Location": status_url},
    )


# --------------------------------------------------------------------------- status document


def run_status_document(run: ImportRun, request: HttpRequest) -> dict[str, Any]:
    """Return the run's status document (CONTRACT §4), JSON-ready; the admin card reuses it.

    The contract's fields come first, unchanged; the rest are additions. `percent` is
    run_percent's. Timestamps are RFC 3339 strings as in the event status API (null until
    they happen); URLs are absolute.
    """
    return {
        "id": run.pk,
        "status": run.status,
        "total_rows": run.total_rows,
        "processed_rows": run.processed_rows,
        "succeeded_rows": run.succeeded_rows,
        "failed_rows": run.failed_rows,
        "skipped_rows": run.skipped_rows,
        "percent": run_percent(run),
        "created_at": _timestamp(run.created_at),
        "started_at": _timestamp(run.started_at),
        "finished_at": _timestamp(run.finished_at),
        "errors_url": _absolute_url(request, "imports:errors", run),
        # Additions: what the admin card and a curious integrator also want to see.
        "connector": run.connector.slug if run.connector_id else None,
        "filename": run.original_filename,
        "batches_total": run.batch_count,
        "batches_done": run.batches_done,
        "retries": run.retry_count,
        "warnings": list(run.warnings),
        "error": run.error or None,
    }


def run_percent(run: ImportRun) -> int:
    """Return the whole percent of data rows processed (0-100, as docs/integrators.md shows).

    Rounded down, so it reads 100 only once every row has been processed. Before the batches
    are planned the total is 0 and so is the percent; a run that ended with no data rows at
    all (an empty or unreadable file) is 100, a run cancelled before planning 0.
    """
    if run.total_rows:
        return min(run.processed_rows * 100 // run.total_rows, 100)
    return 100 if run.status in _DONE_STATUSES else 0


# --------------------------------------------------------------------------- run endpoints


@dataclass(frozen=True)
class _Viewer:
    # The connectors whose runs the caller may see; None: a staff session, every run.
    connector_ids: list[int] | None


RunHandler = Callable[[HttpRequest, ImportRun], HttpResponse]


def _run_endpoint(*methods: str) -> Callable[[RunHandler], Callable[..., HttpResponse]]:
    """Wrap a handler of one run: method check (405), caller (401/403), the run (404)."""
    allowed = (*methods, "HEAD") if "GET" in methods else methods

    def decorate(handler: RunHandler) -> Callable[..., HttpResponse]:
        @csrf_exempt  # token requests need none; session POSTs are checked in _viewer
        @never_cache
        @wraps(handler)
        def view(request: HttpRequest, run_id: str) -> HttpResponse:
            if request.method not in allowed:
                return _method_not_allowed(allowed, f"{' or '.join(methods)} only")
            viewer = _viewer(request)
            if isinstance(viewer, HttpResponse):
                return viewer
            pk = _parse_id(run_id)
            run = None if pk is None else run_get(run_id=pk, connector_ids=viewer.connector_ids)
            if run is None:
                return error_response(404, "", "no such import run")
            return handler(request, run)

        return view

    return decorate


@_run_endpoint("GET")
def run_status(request: HttpRequest, run: ImportRun) -> HttpResponse:
    return JsonResponse(run_status_document(run, request))


@_run_endpoint("GET")
def run_errors(request: HttpRequest, run: ImportRun) -> HttpResponse:
    """Stream `line,sku,column,code,message` in line order; formula-like cells neutralised."""
    response = StreamingHttpResponse(
        iter_error_report(run_row_errors(run_id=run.pk)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="import-{run.pk}-errors.csv"'
    return response


@_run_endpoint("POST")
def run_retry_failed(request: HttpRequest, run: ImportRun) -> HttpResponse:
    """Queue the failed rows again: 202 with the status document, 409 if there is nothing to."""
    try:
        run = services.import_retry_failed(run_id=run.pk)
    except services.ImportNotAllowed as exc:
        return error_response(409, "", f"cannot retry: {exc}")
    except ImportRun.DoesNotExist:
        return error_response(404, "", "no such import run")
    return JsonResponse(run_status_document(run, request), status=202)


@_run_endpoint("POST")
def run_cancel(request: HttpRequest, run: ImportRun) -> HttpResponse:
    """Cancel the run: 202 with the status document; 409 once it has finished.

    Batches already running finish and stay applied; the others do nothing.
    """
    try:
        run = services.import_cancel(run_id=run.pk)
    except services.ImportNotAllowed as exc:
        return error_response(409, "", f"cannot cancel: {exc}")
    except ImportRun.DoesNotExist:
        return error_response(404, "", "no such import run")
    return JsonResponse(run_status_document(run, request), status=202)


# --------------------------------------------------------------------------- helpers


def _viewer(request: HttpRequest) -> _Viewer | HttpResponse:
    """Return who is asking, or the 401/403 answer.

    A Bearer header decides alone (a wrong token is 401 even beside a staff session); any
    other Authorization scheme, e.g. a proxy's Basic auth, leaves the session to decide.
    """
    token = _bearer_token(request)
    if token is not None:
        connector_ids = connector_ids_for_token(token=token)
        return _Viewer(connector_ids) if connector_ids else _unauthorized()
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return _unauthorized()
    if not (user.is_active and user.is_staff):
        return error_response(403, "", "import runs are visible to staff and their connector only")
    if request.method not in _SAFE_METHODS and _csrf_rejects(request):
        return error_response(
            403, "", "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken"
        )
    return _Viewer(None)


def _csrf_rejects(request: HttpRequest) -> bool:
    """Run Django's CSRF check, which the view's csrf_exempt skipped for token callers."""
    check = CsrfViewMiddleware(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def _bearer_token(request: HttpRequest) -> str | None:
    """Return the Bearer token ("" if empty), or None when the header is not Bearer."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _bearer_connector(request: HttpRequest, slug: str) -> Connector | None:
    token = _bearer_token(request)
    if not token:
        return None
    return connector_authenticate(slug=slug, token=token)


def _declared_length(request: HttpRequest) -> int | None:
    """The body size the client announced, if it announced a usable one."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _parse_id(run_id: str) -> int | None:
    # Bounded, so a huge number is a 404 and never a database overflow.
    if run_id.isascii() and run_id.isdigit() and len(run_id) <= 18:
        return int(run_id)
    return None


def _absolute_url(request: HttpRequest, name: str, run: ImportRun) -> str:
    return request.build_absolute_uri(reverse(name, kwargs={"run_id": run.pk}))


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else _JSON_ENCODER.default(value)


def _unauthorized() -> JsonResponse:
    return error_response(
        401,
        "Authorization",
        "a valid 'Authorization: Bearer <api token>' header is required",
        headers={"WWW-Authenticate": 'Bearer realm="syncplatform"'},
    )


def _too_large(limit: int) -> JsonResponse:
    return error_response(413, "file", f"the file must not exceed {limit} bytes")


def _method_not_allowed(allowed: tuple[str, ...], message: str) -> JsonResponse:
    return error_response(405, "", message, headers={"Allow": ", ".join(allowed)})
