"""The demo data `make run` loads."""

import pytest
from django.contrib.auth.models import Group


@pytest.mark.django_db
def test_the_demo_data_command_is_repeatable_and_sets_up_a_demo(monkeypatch):
    from django.core.management import call_command

    from deployments.models import Deployment, ModelVersion, RegisteredModel

    monkeypatch.setattr("deployments.tasks.run_deployment_task.delay", lambda pk: None)
    monkeypatch.setattr("deployments.tasks.validate_version_task.delay", lambda pk: None)
    call_command("load_demo_data", stdout=open("/dev/null", "w"))
    call_command("load_demo_data", stdout=open("/dev/null", "w"))
    assert RegisteredModel.objects.count() == 3
    assert ModelVersion.objects.count() == 7
    assert set(ModelVersion.objects.values_list("status", flat=True)) == {"ready"}
    states = dict(Deployment.objects.values_list("target__name", "state"))
    assert states == {"iris-staging": "queued", "iris-production": "requested"}
    assert Group.objects.get(name="viewer").user_set.filter(username="carol").exists()
