from django.apps import AppConfig


class MlopsPortalConfig(AppConfig):
    name = "mlops_portal"
    verbose_name = "MLOps Portal"

    def ready(self):
        from django.contrib.auth.signals import user_login_failed

        from mlops_portal.core import audit, db, login_protection
        from mlops_portal.core.api import (
            schema,  # noqa: F401  (registers the OpenAPI auth scheme)
            strings,
        )
        from mlops_portal.overview import announcements

        audit.register_models()
        db.install()
        strings.install()
        announcements.subscribe()
        user_login_failed.connect(
            login_protection.log_failed_login, dispatch_uid="portal-log-failed-login"
        )
