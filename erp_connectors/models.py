"""Connectors (one per ERP system) and the webhook events they send."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

# Standard Webhooks ids are at most this long (CONTRACT §2); also the column width.
WEBHOOK_ID_MAX_LENGTH = 255


class Connector(models.Model):
    """One ERP system: how it signs webhooks, how it authenticates, how we reach it."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(
        default=True, help_text="A disabled connector's webhooks are refused with 404."
    )
    # Kept readable: verifying an HMAC needs the secret itself, not a hash of it.
    webhook_secret = models.CharField(max_length=128)
    # The secret before the last rotation, still accepted until the ERP has switched over.
    webhook_secret_previous = models.CharField(max_length=128, blank=True)
    webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # SHA-256 hex of the API token; the token itself is shown once and never stored.
    api_token_hash = models.CharField(max_length=64)
    erp_url = models.URLField(blank=True, help_text="Base URL of the ERP's REST API.")
    erp_token = models.CharField(
        max_length=512, blank=True, help_text="Bearer token for calls to the ERP."
    )
    notify_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug

    @property
    def live_webhook_secrets(self) -> list[str]:
        """Return every secret a signature may be made with, newest first."""
        return [s for s in (self.webhook_secret, self.webhook_secret_previous) if s]


class InboundEvent(models.Model):
    """One signed webhook delivery, its validated items and how applying them went."""

    class Type(models.TextChoices):
        STOCK_UPDATED = "stock.updated", "Stock updated"
        PRICE_UPDATED = "price.updated", "Price updated"

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        PROCESSING = "processing", "Processing"
        APPLIED = "applied", "Applied"
        PARTIALLY_APPLIED = "partially_applied", "Partially applied"
        FAILED = "failed", "Failed"

    # Statuses after which nothing is left to apply until someone asks for a retry.
    COMPLETED_STATUSES = (Status.APPLIED, Status.PARTIALLY_APPLIED, Status.FAILED)

    # No index of its own: the unique (connector, webhook_id) index leads with it.
    connector = models.ForeignKey(
        Connector, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    webhook_id = models.CharField(max_length=WEBHOOK_ID_MAX_LENGTH)
    type = models.CharField(max_length=32, choices=Type.choices)
    # Tells a re-delivery (same bytes) from a conflicting reuse of the id.
    body_sha256 = models.CharField(max_length=64)
    # The payload's own "timestamp": when the ERP says the event happened.
    occurred_at = models.DateTimeField(null=True, blank=True)
    # The validated items in delivery order; item indexes below refer to this list.
    payload = models.JSONField(default=list)
    # Indexed in Meta: db_index=True would add a second, LIKE-only index on PostgreSQL.
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACCEPTED)
    received_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    total_items = models.PositiveIntegerField(default=0)
    applied_items = models.PositiveIntegerField(default=0)
    stale_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    # Outcome of every failed item: [{"index", "sku", "code", "message"}]. A retry applies
    # exactly these indexes again, so this list is also the retry work list.
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-received_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "webhook_id"], name="erp_event_unique_webhook_id"
            ),
        ]
        indexes = [
            models.Index(fields=["received_at"], name="erp_event_received_idx"),
            models.Index(fields=["status"], name="erp_event_status_idx"),
            # Metrics and the relay-lag checks look at events not yet completed.
            models.Index(
                fields=["received_at"],
                condition=Q(status__in=["accepted", "processing"]),
                name="erp_event_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connector_id}:{self.webhook_id}"

    @property
    def has_run(self) -> bool:
        """True once the items have been applied at least once (counters then add up)."""
        return self.applied_items + self.stale_items + self.failed_items > 0

    def pending_indexes(self) -> list[int]:
        """Return the item indexes the next apply run must handle.

        Before the first run that is every item; afterwards only the failed ones, which a
        retry asked to apply again.
        """
        if not self.has_run:
            return list(range(len(self.payload)))
        return [error["index"] for error in self.errors]


class ReconciliationRun(models.Model):
    """One pass over an ERP's own view of stock and prices (CONTRACT §5), and what it found.

    Counters move in the transaction that applies each page, so they never go backwards and
    `found = fixed + in_sync + failed` holds at every commit.
    """

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Command"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    connector = models.ForeignKey(
        Connector, on_delete=models.PROTECT, related_name="reconciliation_runs", db_index=False
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    # Moves with every page: a running run whose heartbeat is old was abandoned.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    # Items the ERP listed, stock and prices together.
    found = models.PositiveIntegerField(default=0)
    # Items where the ERP was newer than the catalog (drift), applied.
    fixed = models.PositiveIntegerField(default=0)
    # Items refused: invalid, or an unknown sku.
    failed = models.PositiveIntegerField(default=0)
    # The first refused items: [{"kind", "sku", "code", "message"}], at most 100.
    errors = models.JSONField(default=list, blank=True)
    # Why a failed run stopped, for people; never holds a credential.
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("-started_at",)
        constraints = [
            # One run per connector at a time; a second start is refused (reconciliation.py).
            models.UniqueConstraint(
                fields=["connector"],
                condition=Q(status="running"),
                name="erp_reconciliation_one_running",
            ),
        ]
        indexes = [
            models.Index(fields=["connector", "-started_at"], name="erp_reconciliation_conn_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.connector_id}:{self.pk}"

    @property
    def in_sync(self) -> int:
        """Items the catalog already had, as new as the ERP's or newer."""
        return self.found - self.fixed - self.failed
