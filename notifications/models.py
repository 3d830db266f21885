"""Messages to people: import results, drift reports, operator alerts."""

from django.db import models


class Notification(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "JSON webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    channel = models.CharField(max_length=16, choices=Channel.choices)
    # An email address or a webhook URL, depending on the channel.
    recipient = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    # Structured facts (counts, ids) sent as JSON to webhook channels.
    data = models.JSONField(default=dict, blank=True)
    # Stable key of what the notification is about; one notification per key and recipient.
    dedup_key = models.CharField(max_length=255)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key", "channel", "recipient"], name="notification_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient}: {self.subject}"
