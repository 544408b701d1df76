from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring and incidents"

    def ready(self):
        from monitoring import integration

        integration.register()
