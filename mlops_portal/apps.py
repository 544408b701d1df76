from django.apps import AppConfig


class MlopsPortalConfig(AppConfig):
    name = "mlops_portal"
    verbose_name = "MLOps Portal"

    def ready(self):
        from mlops_portal import audit
        from mlops_portal.api import schema  # noqa: F401  (registers the OpenAPI auth scheme)

        audit.register_models()
