from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "syncplatform.outbox"
    label = "outbox"
    verbose_name = "Outbox"
