"""The transactional outbox: work recorded with the data it is about, published later."""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxMessage(models.Model):
    """One Celery task to publish. Written in the caller's transaction, never outside it."""

    task_name = models.CharField(max_length=200)
    queue = models.CharField(max_length=32)
    # Ids and small scalars only: the task loads what it needs when it runs.
    kwargs = models.JSONField(default=dict)
    # Lets consumers and operators recognise a re-publish of the same intent.
    dedup_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # The relay's scan and the backlog gauge read only unpublished rows.
            models.Index(
                fields=["created_at"],
                condition=Q(published_at__isnull=True),
                name="outbox_unpublished_idx",
            ),
            models.Index(fields=["published_at"], name="outbox_published_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}#{self.pk}"

    @property
    def task_id(self) -> str:
        """The Celery task id: stable, so a re-published message is the same task."""
        return f"outbox-{self.pk}"
