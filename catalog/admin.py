"""Read-only admin views of the catalog: the ERP owns this data and the services write it."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import Price, Product, StockLevel


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StockLevelInline(_ReadOnlyInline):
    model = StockLevel
    fields = ("warehouse", "quantity", "updated_at")
    ordering = ("warehouse",)


class PriceInline(_ReadOnlyInline):
    model = Price
    fields = ("currency", "amount", "updated_at")
    ordering = ("currency",)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "active", "updated_at", "changed_at")
    list_filter = (
        "active",
        ("changed_at", admin.DateFieldListFilter),
        "stock_levels__warehouse",
        "prices__currency",
    )
    search_fields = ("sku", "name")
    ordering = ("-changed_at", "-id")
    fields = ("sku", "name", "active", "created_at", "updated_at", "changed_at")
    readonly_fields = fields
    inlines = (StockLevelInline, PriceInline)
    # Counting a large catalog on every page load is slow and rarely needed.
    show_full_result_count = False
    list_per_page = 50

    # Edits here would be overwritten by the next ERP update, and would bypass the versioned
    # services; staff may still delete a product created by mistake.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
