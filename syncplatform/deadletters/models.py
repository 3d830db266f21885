"""Work that will not be retried any more, kept for an operator to requeue or discard."""

from django.db import models


class DeadLetter(models.Model):
    class Reason(models.TextChoices):
        EXHAUSTED = "exhausted", "Retries exhausted"
        DEADLINE = "deadline", "Retry deadline passed"
        PERMANENT = "permanent", "Permanent error"
        TIMEOUT = "timeout", "Killed at the hard time limit"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        REQUEUED = "requeued", "Requeued"
        DISCARDED = "discarded", "Discarded"

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=255, blank=True)
    queue = models.CharField(max_length=32, blank=True)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    error = models.TextField()
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField()
    # One entry per attempt: when it ran, what failed, how long the retry waited.
    history = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.task_name} ({self.reason}, {self.status})"
