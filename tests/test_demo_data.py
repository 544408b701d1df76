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


@pytest.mark.django_db
def test_demo_history_rollouts_take_different_times_and_a_re_run_says_nothing_new():
    import io

    from django.core.management import call_command

    from deployments.models import Deployment

    first, second = io.StringIO(), io.StringIO()
    call_command("load_demo_data", stdout=first)
    call_command("load_demo_data", stdout=second)
    history = Deployment.objects.filter(reason="Demo history.")
    took = {d.duration.total_seconds() for d in history}
    assert len(took) == history.count() > 1  # never "took 300.0 s" on every row
    assert "eight weeks of deployment history" in first.getvalue()
    assert "already loaded" in second.getvalue()
    assert "deploys to iris-staging when the worker starts" not in second.getvalue()
