from django.apps import AppConfig


class DeadLettersConfig(AppConfig):
    name = "syncplatform.deadletters"
    label = "deadletters"
    verbose_name = "Dead letters"
