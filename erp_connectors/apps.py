from django.apps import AppConfig


class ErpConnectorsConfig(AppConfig):
    name = "erp_connectors"
    verbose_name = "ERP connectors"

    def ready(self) -> None:
        from syncplatform.outbox.publisher import outbox_batch_form_register

        # Under load the relay sends runs of webhook applies as one message each.
        outbox_batch_form_register(
            "erp_connectors.apply_event",
            batch_task="erp_connectors.apply_events",
            kwarg="event_id",
            batch_kwarg="event_ids",
        )
