from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from syncplatform.outbox.relay import broker_unavailable

        from .alerts import on_broker_unavailable

        broker_unavailable.connect(on_broker_unavailable, dispatch_uid="broker_outage_alert")
