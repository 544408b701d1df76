from django.apps import AppConfig


class MlopsPortalConfig(AppConfig):
    name = "mlops_portal"
    verbose_name = "MLOps Portal"
