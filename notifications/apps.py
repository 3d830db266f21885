from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from syncplatform.outbox.relay import broker_unavailable

        from .alerts import broker_outage_announce

        def announce(sender: object, error: str, down_seconds: float, **kwargs: object) -> None:
            broker_outage_announce(error=error, down_seconds=down_seconds)

        broker_unavailable.connect(announce, weak=False, dispatch_uid="broker_outage_alert")
