from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import DeadLetter
from .services import dead_letter_discard, dead_letter_requeue


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "task_name", "queue", "reason", "attempts", "status", "created_at")
    list_filter = ("status", "reason", "queue", "task_name")
    search_fields = ("task_name", "task_id", "error")
    date_hierarchy = "created_at"
    actions = ("requeue", "discard")
    readonly_fields = tuple(f.name for f in DeadLetter._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Requeue selected dead letters")
    def requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        done = 0
        user = request.user.get_username()
        for letter_id in queryset.values_list("pk", flat=True):
            try:
                done += dead_letter_requeue(dead_letter_id=letter_id, by=user)
            except ValueError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, f"Requeued {done} dead letter(s).", messages.SUCCESS)

    @admin.action(description="Discard selected dead letters")
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        user = request.user.get_username()
        done = sum(
            dead_letter_discard(dead_letter_id=pk, by=user)
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"Discarded {done} dead letter(s).", messages.SUCCESS)
