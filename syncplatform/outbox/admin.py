from django.contrib import admin

from .models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "task_name", "queue", "created_at", "published_at", "publish_attempts")
    list_filter = ("queue", "task_name", ("published_at", admin.EmptyFieldListFilter))
    search_fields = ("task_name", "dedup_key")
    readonly_fields = tuple(f.name for f in OutboxMessage._meta.fields)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
