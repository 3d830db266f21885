"""Import runs in the admin (CONTRACT §4): upload, the live run card, retry, cancel, report.

The add page is an upload form, not a model form: a run is only ever made by
imports.services.import_create. The change page is a read-only run card whose counters
move by polling a small JSON view; actions post to their own admin URLs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .admin_views import (
    INLINE_ERRORS,
    ImportUploadForm,
    error_report_response,
    percent_display,
    run_progress_document,
    upload_too_large_message,
)
from .api import run_percent
from .models import ImportRun
from .parsing import CsvFormatError
from .services import ImportNotAllowed, import_cancel, import_create, import_retry_failed
from .uploads import (
    MULTIPART_OVERHEAD_BYTES,
    UploadTooLarge,
    upload_limit_exceeded,
    upload_limit_install,
)

_UPLOAD_FIELDSETS = [(None, {"fields": ["file", "encoding", "force", "connector"]})]


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "file_name",
        "uploader",
        "status_badge",
        "progress",
        "rows",
        "succeeded",
        "failed",
        "skipped",
        "created_at",
    )
    list_display_links = ("id", "file_name")
    list_filter = ("status", "connector")
    search_fields = ("original_filename",)
    date_hierarchy = "created_at"
    list_select_related = ("connector", "uploaded_by")
    actions = ("retry_failed_rows", "cancel_runs")
    add_form_template = "admin/imports/importrun/upload_form.html"
    run_card_template = "admin/imports/importrun/run_card.html"

    class Media:
        css = {"all": ("imports/admin/imports.css",)}

    # ------------------------------------------------------------------ changelist

    @admin.display(description="File", ordering="original_filename")
    def file_name(self, run: ImportRun) -> str:
        return run.original_filename or run.file.name

    @admin.display(description="Uploaded by")
    def uploader(self, run: ImportRun) -> str:
        if run.connector_id:
            return f"connector {run.connector.slug}"
        if run.uploaded_by_id:
            return run.uploaded_by.get_username()
        return "—"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run: ImportRun) -> str:
        return format_html(
            '<span class="import-status import-status--{}">{}</span>',
            run.status,
            run.get_status_display(),
        )

    @admin.display(description="Progress")
    def progress(self, run: ImportRun) -> str:
        percent = run_percent(run)
        return format_html(
            '<span class="import-progress import-progress--small" aria-hidden="true">'
            '<span class="import-progress__bar" style="width: {}%"></span></span>'
            ' <span class="import-percent">{}</span>',
            percent,
            percent_display(percent),
        )

    @admin.display(description="Processed / total")
    def rows(self, run: ImportRun) -> str:
        return f"{run.processed_rows} / {run.total_rows}"

    @admin.display(description="Succeeded", ordering="succeeded_rows")
    def succeeded(self, run: ImportRun) -> int:
        return run.succeeded_rows

    @admin.display(description="Failed", ordering="failed_rows")
    def failed(self, run: ImportRun) -> int:
        return run.failed_rows

    @admin.display(description="Skipped", ordering="skipped_rows")
    def skipped(self, run: ImportRun) -> int:
        return run.skipped_rows

    @admin.action(description="Retry failed rows of selected runs", permissions=["change"])
    def retry_failed_rows(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        self._act_on_each(request, queryset, import_retry_failed, "Queued the failed rows of")

    @admin.action(description="Cancel selected runs", permissions=["change"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        self._act_on_each(request, queryset, import_cancel, "Cancelled")

    def _act_on_each(
        self,
        request: HttpRequest,
        queryset: QuerySet[ImportRun],
        service: Callable[..., ImportRun],
        done_text: str,
    ) -> None:
        done = 0
        for run_id in queryset.values_list("pk", flat=True):
            try:
                service(run_id=run_id)
            except ImportNotAllowed as exc:
                self.message_user(request, f"Import #{run_id}: {exc}.", messages.WARNING)
                continue
            done += 1
        self.message_user(
            request, f"{done_text} {done} run(s).", messages.SUCCESS if done else messages.WARNING
        )

    # ------------------------------------------------------------------ urls

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name

        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            def wrapper(*args: Any, **kwargs: Any) -> HttpResponse:
                return self.admin_site.admin_view(view)(*args, **kwargs)

            wrapper.model_admin = self  # type: ignore[attr-defined]
            return update_wrapper(wrapper, view)

        add_name = "{}_{}_add".format(*info)
        custom = [
            # Exempt from the CSRF middleware only so that the size limit is in place before
            # anything reads the body; the view checks the token itself right after.
            path("add/", wrap(csrf_exempt(self._upload_view)), name=add_name),
            path(
                "<path:object_id>/progress/",
                wrap(self.progress_view),
                name="{}_{}_progress".format(*info),
            ),
            path(
                "<path:object_id>/errors.csv",
                wrap(self.error_report_view),
                name="{}_{}_errors".format(*info),
            ),
            path(
                "<path:object_id>/retry-failed/",
                wrap(self.retry_failed_view),
                name="{}_{}_retry_failed".format(*info),
            ),
            path(
                "<path:object_id>/cancel/",
                wrap(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
        ]
        return custom + [url for url in super().get_urls() if url.name != add_name]

    def _url(self, action: str, run: ImportRun) -> str:
        info = self.opts.app_label, self.opts.model_name
        return reverse(
            "admin:{}_{}_{}".format(*info, action), args=[run.pk], current_app=self.admin_site.name
        )

    # ------------------------------------------------------------------ upload (add view)

    def _upload_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Cap the upload while it streams in, then check CSRF and run the add view.

        The handler must be installed before request.POST or request.FILES is first read,
        and the CSRF check is the first reader; hence the order.
        """
        if request.method == "POST":
            upload_limit_install(
                request,
                limit=settings.IMPORT_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES,
                reset_connection=False,
            )
        return csrf_protect(self.add_view)(request, *args, **kwargs)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            data, files = request.POST, request.FILES  # parsed here at the latest
            form = ImportUploadForm(data, files, upload_too_large=upload_limit_exceeded(request))
            if form.is_valid():
                response = self._upload(request, form)
                if response is not None:
                    return response
        else:
            form = ImportUploadForm()
        admin_form = helpers.AdminForm(form, _UPLOAD_FIELDSETS, {}, model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload a catalog CSV",
            "subtitle": None,
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    def _upload(self, request: HttpRequest, form: ImportUploadForm) -> HttpResponse | None:
        """Create the run; None (with the form's errors set) if the file is refused."""
        upload = form.cleaned_data["file"]
        try:
            created = import_create(
                source=upload,
                filename=upload.name,
                encoding=form.cleaned_data["encoding"],
                force=form.cleaned_data["force"],
                connector=form.cleaned_data["connector"],
                uploaded_by=request.user,
            )
        except UploadTooLarge:
            form.add_error("file", upload_too_large_message())
            return None
        except CsvFormatError as exc:
            form.add_error("encoding", exc.message)
            return None
        finally:
            upload.close()
        run = created.run
        if created.duplicate:
            self.message_user(
                request,
                f"This file was already uploaded as import #{run.pk} "
                f"({run.get_status_display().lower()}); nothing new was queued. "
                "Tick “Import again” to import it once more.",
                messages.WARNING,
            )
        else:
            self.log_addition(request, run, [{"added": {}}])
            self.message_user(
                request,
                f"Import #{run.pk} of {run.original_filename} is queued.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._url("change", run))

    # ------------------------------------------------------------------ run card

    def _run_or_404(self, request: HttpRequest, object_id: str) -> ImportRun:
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404(f"Import run {object_id!r} does not exist.")
        return run

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """The read-only run card; its actions post to their own URLs."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        run = self._run_or_404(request, object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        document = run_progress_document(run, request)
        can_change = self.has_change_permission(request, run)
        context = {
            **self.admin_site.each_context(request),
            "title": str(run),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": run,
            "run": run,
            "doc": document,
            "media": self.media,
            "inline_errors": INLINE_ERRORS,
            "poll_interval_ms": settings.IMPORT_RUN_CARD_POLL_MS,
            "progress_url": self._url("progress", run),
            # The admin's own report URL: the card's links stay within the admin.
            "errors_url": self._url("errors", run),
            "retry_url": self._url("retry_failed", run),
            "cancel_url": self._url("cancel", run),
            "history_url": self._url("history", run),
            "has_change_permission": can_change,
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.run_card_template, context)

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The run's counters for the card's poller (never cached: admin views are not)."""
        run = self._run_or_404(request, object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return JsonResponse(run_progress_document(run, request))

    def error_report_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._run_or_404(request, object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return error_report_response(run)

    def retry_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._post_action(
            request, object_id, import_retry_failed, "The failed rows are queued again."
        )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._post_action(
            request, object_id, import_cancel, "The run is cancelled; applied batches stay."
        )

    def _post_action(
        self,
        request: HttpRequest,
        object_id: str,
        service: Callable[..., ImportRun],
        done_text: str,
    ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._run_or_404(request, object_id)
        if not self.has_change_permission(request, run):
            raise PermissionDenied
        try:
            service(run_id=run.pk)
        except ImportNotAllowed as exc:
            self.message_user(request, f"Not possible now: {exc}.", messages.ERROR)
        else:
            self.message_user(request, done_text, messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", run))
