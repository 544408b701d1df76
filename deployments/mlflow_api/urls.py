from django.contrib.auth.decorators import login_not_required
from django.urls import path

from deployments.mlflow_api.views import endpoint

# One pattern: the view answers MLflow's ENDPOINT_NOT_FOUND for any path it does not know.
mlflow_endpoint = login_not_required(endpoint)
urlpatterns = [
    path("", mlflow_endpoint, {"path": ""}),
    path("<path:path>", mlflow_endpoint),
]
