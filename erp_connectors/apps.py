from django.apps import AppConfig


class ErpConnectorsConfig(AppConfig):
    name = "erp_connectors"
    verbose_name = "ERP connectors"
