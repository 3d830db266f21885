from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "recipient", "subject", "status", "attempts", "created_at")
    list_filter = ("status", "channel")
    search_fields = ("recipient", "subject", "dedup_key")
    readonly_fields = tuple(f.name for f in Notification._meta.fields)

    def has_add_permission(self, request: object) -> bool:
        return False
