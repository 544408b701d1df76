from django.urls import include, path
from rest_framework.routers import DefaultRouter

from deployments.api.deploy_views import DeploymentCallbackView, DeploymentViewSet, TargetViewSet
from deployments.api.views import ModelVersionViewSet, RegisteredModelViewSet
from docs_app.api.views import ModelCardView, PagePreviewView, PageViewSet
from mlops_portal.api.tokens import ApiTokenViewSet
from mlops_portal.overview.api.changes import ChangeViewSet
from mlops_portal.overview.api.metrics import MetricsView
from mlops_portal.overview.api.search import SearchView
from monitoring.api.views import (
    AlertRuleViewSet,
    FeedbackView,
    HealthCheckViewSet,
    IncidentViewSet,
)


class PortalRouter(DefaultRouter):
    # No `.json` URL suffixes: they double the patterns every API call is matched against
    # (`?format=json` still selects a renderer).
    include_format_suffixes = False


router = PortalRouter()
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("models", RegisteredModelViewSet, basename="model")
router.register("targets", TargetViewSet, basename="target")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("checks", HealthCheckViewSet, basename="check")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("alert-rules", AlertRuleViewSet, basename="alert-rule")
router.register("pages", PageViewSet, basename="page")
router.register("changes", ChangeViewSet, basename="change")

versions = PortalRouter()
versions.include_root_view = False
versions.register("versions", ModelVersionViewSet, basename="model-version")

urlpatterns = [
    path("search/", SearchView.as_view(), name="search"),
    path("metrics/<str:figure>/", MetricsView.as_view(), name="metrics"),
    path("pages/preview/", PagePreviewView.as_view(), name="page-preview"),
    path("models/<str:name>/card/", ModelCardView.as_view(), name="model-card"),
    path(
        "deployments/<int:pk>/callback/",
        DeploymentCallbackView.as_view(),
        name="deployment-callback",
    ),
    path("deployments/<int:pk>/feedback/", FeedbackView.as_view(), name="deployment-feedback"),
    path("models/<str:model_name>/", include(versions.urls)),
    path("", include(router.urls)),
]
