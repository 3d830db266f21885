"""The shop's read model of the ERP catalog: products, stock per warehouse, prices per currency.

Rows are written only by catalog.services, which compare the ERP's `updated_at` versions.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

SKU_MAX_LENGTH = 64
NAME_MAX_LENGTH = 255
WAREHOUSE_MAX_LENGTH = 32
CURRENCY_LENGTH = 3
QUANTITY_MAX = 2_147_483_647
AMOUNT_MAX_DIGITS = 19
AMOUNT_DECIMAL_PLACES = 4


class Product(models.Model):
    # Unique by a constraint, not unique=True, which on PostgreSQL adds a second index
    # (varchar_pattern_ops, for LIKE 'prefix%') that nothing here queries and every write
    # of a product would keep up to date.
    sku = models.CharField(max_length=SKU_MAX_LENGTH)
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The ERP/CSV version of name and active: an older version is never written over it.
    updated_at = models.DateTimeField(default=timezone.now)
    # When anything a storefront sees changed (stock and prices too): the listing's clock.
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sku"], name="catalog_product_sku_uniq"),
            models.CheckConstraint(condition=~Q(sku=""), name="catalog_product_sku_not_empty"),
        ]
        indexes = [
            # Keyset pagination of the listing walks (changed_at, id) in order.
            models.Index(fields=["changed_at", "id"], name="catalog_product_changed_idx"),
        ]

    def __str__(self) -> str:
        return self.sku


class StockLevel(models.Model):
    # No separate index on product_id: the unique constraint's index leads with it.
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="stock_levels", db_index=False
    )
    warehouse = models.CharField(max_length=WAREHOUSE_MAX_LENGTH)
    # An absolute level (never a delta); PostgreSQL's integer caps it at QUANTITY_MAX.
    quantity = models.PositiveIntegerField()
    # The ERP's version of this level.
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "warehouse"], name="catalog_stock_product_warehouse_uniq"
            ),
            models.CheckConstraint(
                condition=~Q(warehouse=""), name="catalog_stock_warehouse_not_empty"
            ),
            models.CheckConstraint(
                condition=Q(quantity__lte=QUANTITY_MAX), name="catalog_stock_quantity_max"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.warehouse}: {self.quantity}"


class Price(models.Model):
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="prices", db_index=False
    )
    currency = models.CharField(max_length=CURRENCY_LENGTH)
    amount = models.DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES)
    # The ERP's version of this price.
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "currency"], name="catalog_price_product_currency_uniq"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="catalog_price_amount_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
