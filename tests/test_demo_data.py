"""The demo data `make run` loads."""

import pytest
from django.contrib.auth.models import Group


@pytest.mark.django_db
def test_the_demo_data_command_is_repeatable_and_sets_up_a_demo():
    from django.core.management import call_command

    from deployments.models import Deployment, ModelVersion, RegisteredModel
    from mlops_portal.overview.dashboards import Scope, dora

    call_command("load_demo_data", stdout=open("/dev/null", "w"))
    call_command("load_demo_data", stdout=open("/dev/null", "w"))
    assert RegisteredModel.objects.count() == 4
    assert ModelVersion.objects.count() == 8
    assert set(ModelVersion.objects.values_list("status", flat=True)) == {"ready"}
    lightgbm = ModelVersion.objects.get(model__name="churn-lightgbm")
    assert (lightgbm.flavor, lightgbm.mlflow_flavors) == ("mlflow", ["lightgbm", "python_function"])
    assert [column["name"] for column in lightgbm.signature["inputs"]] == [
        "tenure_months", "monthly_spend", "support_tickets", "logins_per_week"
    ]  # fmt: skip
    today = Deployment.objects.filter(reason__startswith="Demo:")
    states = dict(today.values_list("target__name", "state"))
    assert states == {"iris-staging": "queued", "iris-production": "requested"}
    # Eight weeks of history give the dashboards something to show, once.
    summary = dora(Scope("week"))["summary"]
    assert (summary["deployments"], summary["failures"]) == (4, 1)
    assert summary["time_to_restore_p50_hours"] is not None
    assert Group.objects.get(name="viewer").user_set.filter(username="carol").exists()
