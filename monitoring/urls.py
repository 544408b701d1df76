from django.urls import path

from monitoring import views

urlpatterns = [
    path("checks/", views.check_list, name="check-list"),
    path("checks/new/", views.check_form, name="check-create"),
    path("checks/<int:pk>/", views.check_detail, name="check-detail"),
    path("checks/<int:pk>/edit/", views.check_form, name="check-edit"),
    path("checks/<int:pk>/<str:verb>/", views.check_action, name="check-action"),
    path("incidents/", views.incident_list, name="incident-list"),
    path("incidents/new/", views.incident_create, name="incident-create"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/<str:verb>/", views.incident_action, name="incident-action"),
]
