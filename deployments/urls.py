from django.urls import path

from deployments.views import artifacts, registry, rollouts

urlpatterns = [
    path("models/", registry.model_list, name="model-list"),
    path("models/new/", registry.model_create, name="model-create"),
    path("models/<str:name>/", registry.model_detail, name="model-detail"),
    path("models/<str:name>/edit/", registry.model_edit, name="model-edit"),
    path("models/<str:name>/aliases/", registry.model_alias, name="model-alias"),
    path("models/<str:name>/compare/", registry.version_compare, name="version-compare"),
    path("models/<str:name>/versions/new/", registry.version_create, name="version-create"),
    path(
        "models/<str:name>/versions/<int:number>/", registry.version_detail, name="version-detail"
    ),
    path(
        "models/<str:name>/versions/<int:number>/edit/", registry.version_edit, name="version-edit"
    ),
    path(
        "models/<str:name>/versions/<int:number>/archive/",
        registry.version_archive,
        name="version-archive",
    ),
]

urlpatterns += [
    # A remote backend's link to one artifact file (deployments.storage); no login.
    path(
        "artifacts/signed/<int:version_id>/<str:token>/<str:filename>",
        artifacts.signed_artifact,
        name="artifact-signed",
    ),
    path("targets/", rollouts.target_list, name="target-list"),
    path("targets/new/", rollouts.target_create, name="target-create"),
    path("targets/<str:name>/", rollouts.target_detail, name="target-detail"),
    path("targets/<str:name>/edit/", rollouts.target_edit, name="target-edit"),
    path("deployments/", rollouts.deployment_list, name="deployment-list"),
    path("deployments/new/", rollouts.deployment_request, name="deployment-request"),
    path("deployments/<int:pk>/", rollouts.deployment_detail, name="deployment-detail"),
    path("deployments/<int:pk>/try/", rollouts.deployment_try, name="deployment-try"),
    path(
        "deployments/<int:pk>/<str:verb>/",
        rollouts.deployment_action,
        name="deployment-action",
    ),
]
