from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from syncplatform.outbox.relay import broker_unavailable, queues_probed

        from .alerts import on_broker_unavailable, on_queues_probed

        broker_unavailable.connect(on_broker_unavailable, dispatch_uid="broker_outage_alert")
        queues_probed.connect(on_queues_probed, dispatch_uid="queue_lag_watch")
