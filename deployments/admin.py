from django.contrib import admin

from deployments.models import ModelVersion, RegisteredModel, VersionEvent


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "team", "latest_version_number", "updated_at"]
    search_fields = ["name", "team"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Read-only: versions change only through the portal's services."""

    list_display = ["model", "number", "status", "archived", "registered_by", "created_at"]
    list_filter = ["status", "archived"]
    list_select_related = ["model", "registered_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


admin.site.register(VersionEvent)
