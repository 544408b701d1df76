from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from mlops_portal.core.api.schema import token_or_login
from mlops_portal.overview import views

urlpatterns = [
    # First: scripts call the API far more often than people open pages, and URL
    # resolution tries patterns in order.
    path("api/v1/", include(("mlops_portal.api.urls", "api"), namespace="api")),
    # MLflow's Model Registry REST API over the same registry (deployments.mlflow_api).
    path("api/2.0/mlflow/", include("deployments.mlflow_api.urls")),
    path("", views.today, name="today"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("ops/banner/", views.ops_banner, name="ops-banner"),
    # Browsers ask for /favicon.ico on pages without an icon link (a print view, a file).
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tokens/", views.token_list, name="token-list"),
    path("search/", views.search_page, name="search"),
    path("changes/", views.change_feed, name="changes"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("notifications/", views.notification_list, name="notification-list"),
    path("notifications/channels/", views.channel_list, name="channel-list"),
    path("notifications/channels/<int:channel_id>/", views.channel_edit, name="channel-edit"),
    path("follow/<str:kind>/<str:name>/", views.follow, name="follow"),
    path("dashboards/", views.dashboard, name="dashboard"),
    path("", include("deployments.urls")),
    path("", include("monitoring.urls")),
    path("", include("docs_app.urls")),
    # DRF marks its views login-exempt; the schema and Swagger UI are for logged-in users
    # and for scripts with an API token (a CI job generating a client).
    path("api/schema/", token_or_login(SpectacularAPIView.as_view()), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file (?script), not inline.
    path(
        "api/docs/",
        token_or_login(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
]

handler403 = "mlops_portal.overview.views.permission_denied"
handler404 = "mlops_portal.overview.views.page_not_found"
handler500 = "mlops_portal.overview.views.server_error"
