from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from .credentials import api_token_generate, api_token_hash, webhook_secret_generate
from .models import Connector, InboundEvent, ReconciliationRun
from .reconciliation import ReconciliationNotPossible, reconciliation_queue
from .services import (
    NothingToRetry,
    connector_forget_previous_secret,
    connector_reset_api_token,
    connector_rotate_webhook_secret,
    event_retry_failed,
)


class ConnectorForm(forms.ModelForm):
    erp_url = forms.URLField(
        required=False, assume_scheme="https", help_text="Base URL of the ERP's REST API."
    )

    class Meta:
        model = Connector
        fields = ("slug", "name", "enabled", "erp_url", "erp_token", "notify_email")
        widgets = {"erp_token": forms.PasswordInput(render_value=True)}


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    """Secrets are never shown on the page; each new one appears once, in a message."""

    form = ConnectorForm
    list_display = ("slug", "name", "enabled", "rotation_pending", "erp_url", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("slug", "name")
    readonly_fields = ("webhook_secret_rotated_at", "created_at", "updated_at")
    actions = (
        "rotate_webhook_secret",
        "forget_previous_secret",
        "reset_api_token",
        "reconcile_now",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Connector | None = None) -> Any:
        # The slug is part of the ERP's webhook URL: changing it would break the ERP.
        if obj is not None:
            return ("slug", *self.readonly_fields)
        return self.readonly_fields

    @admin.display(boolean=True, description="Previous secret live")
    def rotation_pending(self, obj: Connector) -> bool:
        return bool(obj.webhook_secret_previous)

    def save_model(self, request: HttpRequest, obj: Connector, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        secret = webhook_secret_generate()
        token = api_token_generate()
        obj.webhook_secret = secret
        obj.api_token_hash = api_token_hash(token)
        super().save_model(request, obj, form, change)
        self._show_once(request, obj, webhook_secret=secret, api_token=token)

    @admin.action(
        description="Rotate webhook secret (the current one stays accepted)", permissions=["change"]
    )
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        for connector in queryset:
            secret = connector_rotate_webhook_secret(connector_id=connector.pk)
            self._show_once(request, connector, webhook_secret=secret)

    @admin.action(description="Stop accepting the previous webhook secret", permissions=["change"])
    def forget_previous_secret(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        done = sum(
            connector_forget_previous_secret(connector_id=pk)
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"Previous secret dropped for {done} connector(s).")

    @admin.action(description="Reset API token (the old one stops working)", permissions=["change"])
    def reset_api_token(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        for connector in queryset:
            token = connector_reset_api_token(connector_id=connector.pk)
            self._show_once(request, connector, api_token=token)

    @admin.action(
        description="Reconcile now (stock and prices from the ERP)", permissions=["change"]
    )
    def reconcile_now(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        queued: list[str] = []
        for connector in queryset:
            try:
                reconciliation_queue(connector=connector, trigger=ReconciliationRun.Trigger.ADMIN)
            except ReconciliationNotPossible as exc:
                self.message_user(request, f"Not queued: {exc}.", messages.WARNING)
            else:
                queued.append(connector.slug)
        if queued:
            self.message_user(
                request,
                f"Reconciliation queued for {', '.join(queued)}; "
                "follow it under Reconciliation runs.",
                messages.SUCCESS,
            )

    def _show_once(self, request: HttpRequest, connector: Connector, **values: str) -> None:
        shown = format_html_join(", ", "{}: <code>{}</code>", values.items())
        self.message_user(
            request,
            format_html(
                "{}: {}. Copy now, this is the only time it is shown.", connector.slug, shown
            ),
            messages.WARNING,
        )


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = (
        "webhook_id",
        "connector",
        "type",
        "status",
        "total_items",
        "applied_items",
        "stale_items",
        "failed_items",
        "attempts",
        "received_at",
        "completed_at",
    )
    list_filter = ("status", "type", "connector")
    search_fields = ("webhook_id",)
    date_hierarchy = "received_at"
    list_select_related = ("connector",)
    actions = ("retry_failed_items",)
    exclude = ("errors",)
    readonly_fields = (
        *(f.name for f in InboundEvent._meta.fields if f.name != "errors"),
        "item_errors",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Failed items")
    def item_errors(self, obj: InboundEvent) -> str:
        if not obj.errors:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e["index"], e["sku"], e["code"], e["message"]) for e in obj.errors),
        )
        return format_html(
            "<table><thead><tr><th>Index</th><th>SKU</th><th>Code</th><th>Message</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Retry failed items", permissions=["change"])
    def retry_failed_items(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        queued = 0
        for event_id in queryset.values_list("pk", flat=True):
            try:
                event_retry_failed(event_id=event_id)
            except NothingToRetry:
                continue
            queued += 1
        skipped = queryset.count() - queued
        self.message_user(
            request,
            f"Queued the failed items of {queued} event(s); {skipped} had nothing to retry.",
            messages.SUCCESS if queued else messages.WARNING,
        )


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    """Read-only: runs are recorded by the reconciliation itself."""

    list_display = (
        "id",
        "connector",
        "trigger",
        "status",
        "found",
        "fixed",
        "in_sync",
        "failed",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "trigger", "connector")
    date_hierarchy = "started_at"
    list_select_related = ("connector",)
    exclude = ("errors",)
    readonly_fields = (
        *(f.name for f in ReconciliationRun._meta.fields if f.name != "errors"),
        "in_sync",
        "failed_items",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="In sync")
    def in_sync(self, obj: ReconciliationRun) -> int:
        return obj.in_sync

    @admin.display(description="Failed items (first 100)")
    def failed_items(self, obj: ReconciliationRun) -> str:
        if not obj.errors:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e["kind"], e["sku"], e["code"], e["message"]) for e in obj.errors),
        )
        return format_html(
            "<table><thead><tr><th>Kind</th><th>SKU</th><th>Code</th><th>Message</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )
