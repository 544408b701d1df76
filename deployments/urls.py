from django.urls import path

from deployments import views

urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/new/", views.model_create, name="model-create"),
    path("models/<str:name>/", views.model_detail, name="model-detail"),
    path("models/<str:name>/edit/", views.model_edit, name="model-edit"),
    path("models/<str:name>/compare/", views.version_compare, name="version-compare"),
    path("models/<str:name>/versions/new/", views.version_create, name="version-create"),
    path("models/<str:name>/versions/<int:number>/", views.version_detail, name="version-detail"),
    path("models/<str:name>/versions/<int:number>/edit/", views.version_edit, name="version-edit"),
    path(
        "models/<str:name>/versions/<int:number>/archive/",
        views.version_archive,
        name="version-archive",
    ),
]
