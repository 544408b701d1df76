from django.urls import path

from monitoring import views

urlpatterns = [
    path("checks/", views.check_list, name="check-list"),
    path("checks/new/", views.check_form, name="check-create"),
    path("checks/<int:pk>/", views.check_detail, name="check-detail"),
    path("checks/<int:pk>/edit/", views.check_form, name="check-edit"),
    path("checks/<int:pk>/<str:verb>/", views.check_action, name="check-action"),
    # Heartbeat pings: no login, the uuid is the secret (README, "Heartbeat checks").
    path("ping/<uuid:key>", views.ping, name="ping"),
    path("ping/<uuid:key>/start", views.ping, {"signal": "start"}, name="ping-start"),
    path("ping/<uuid:key>/fail", views.ping, {"signal": "fail"}, name="ping-fail"),
    path("ping/<uuid:key>/<int:exit_status>", views.ping, name="ping-exit"),
    path("alert-rules/", views.rule_list, name="rule-list"),
    path("alert-rules/new/", views.rule_form, name="rule-create"),
    path("alert-rules/<int:pk>/edit/", views.rule_form, name="rule-edit"),
    path("alert-rules/<int:pk>/<str:verb>/", views.rule_action, name="rule-action"),
    path("incidents/", views.incident_list, name="incident-list"),
    path("incidents/new/", views.incident_create, name="incident-create"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/<str:verb>/", views.incident_action, name="incident-action"),
]
