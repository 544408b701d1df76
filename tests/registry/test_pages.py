"""Registry pages: what a data scientist, an engineer and a viewer see and can do."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments import services
from deployments.models import ModelVersion
from tests.factories import iris_artifact, register_iris_version


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def test_the_model_list_filters_and_shows_an_empty_state(alice_client, alice, churn):
    services.create_model(alice, name="fraud", team="risk")
    page = alice_client.get("/models/?team=risk").content.decode()
    assert ">fraud</a>" in page and ">churn</a>" not in page
    empty = alice_client.get("/models/?q=nothing-matches").content.decode()
    assert "No model matches these filters" in empty


def test_an_empty_registry_tells_a_data_scientist_what_to_do(alice_client):
    page = alice_client.get("/models/").content.decode()
    assert "Create the first one" in page


def test_the_model_list_costs_the_same_queries_for_few_and_many_models(alice_client, alice):
    def count():
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get("/models/").status_code == 200
        return len(queries)

    services.create_model(alice, name="m-a", tags=["x"])
    few = count()
    for n in range(20):
        services.create_model(alice, name=f"m-{n}", tags=["x", f"t{n}"])
    assert count() == few


def test_creating_a_model_through_the_form(alice_client):
    response = alice_client.post(
        "/models/new/", {"name": "fraud", "team": "risk", "tags": "tabular, risk"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/models/fraud/versions/new/"


def test_the_create_form_shows_the_service_error_on_its_field(alice_client, churn):
    response = alice_client.post("/models/new/", {"name": "churn"})
    assert response.status_code == 200
    assert response.context["form"].errors["name"] == ["A model named 'churn' already exists."]
    assert "A model named &#x27;churn&#x27; already exists." in response.content.decode()


def test_registering_a_version_through_the_form(alice_client, churn):
    artifact = iris_artifact()[0]
    response = alice_client.post(
        "/models/churn/versions/new/",
        {
            "artifact": SimpleUploadedFile("model.joblib", artifact),
            "flavor": "sklearn",
            "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
            "metrics": '{"accuracy": 0.97}',
            "tags": "candidate",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/models/churn/versions/1/"
    version = ModelVersion.objects.get()
    assert version.metrics == {"accuracy": 0.97}
    assert version.artifact_size == len(artifact)


@pytest.mark.parametrize(
    ("upload_name", "extra", "field", "message"),
    [
        ("model.onnx", {}, "artifact", "saved with joblib"),
        ("model.joblib", {"sample_input": "[[1, 2"}, "sample_input", "not valid JSON"),
        ("model.joblib", {"metrics": '{"auc": "high"}'}, "metrics", "must be a number"),
    ],
)
def test_the_register_form_shows_field_errors_and_keeps_the_input(
    alice_client, churn, upload_name, extra, field, message
):
    data = {
        "artifact": SimpleUploadedFile(upload_name, iris_artifact()[0]),
        "flavor": "sklearn",
        "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
        "description": "keep me",
        **extra,
    }
    response = alice_client.post("/models/churn/versions/new/", data)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert "keep me" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_viewers_do_not_get_the_register_form(client, carol, churn):
    client.force_login(carol)
    response = client.get("/models/churn/versions/new/")
    assert response.status_code == 403
    assert "Only data scientists or MLOps engineers may register model versions." in (
        response.content.decode()
    )
    assert "Register version" not in client.get("/models/churn/").content.decode()


def test_the_model_page_charts_a_metric_across_versions(alice_client, alice, churn):
    register_iris_version(alice, churn, metrics={"auc": 0.8, "loss": 0.5})
    register_iris_version(alice, churn, metrics={"auc": 0.9, "loss": 0.4})
    page = alice_client.get("/models/churn/?metric=loss").content.decode()
    assert "/static/plotly/plotly.min.js" in page
    assert "loss by version" in page
    assert '<option value="loss" selected>' in page


def test_the_version_page_polls_until_the_version_is_final(alice_client, alice, churn):
    version = register_iris_version(alice, churn)
    partial = alice_client.get(version.get_absolute_url(), headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert html.lstrip().startswith('<div id="version-status"')
    assert 'hx-trigger="every 2s"' in html
    services.validate_version(version.pk)
    final = alice_client.get(version.get_absolute_url(), headers={"HX-Request": "true"})
    assert "hx-trigger" not in final.content.decode()
    assert "Ready" in final.content.decode()
    # The poll that shows "Ready" brings "Request deployment" with it: no reload needed.
    assert "Request deployment" not in html
    assert "Request deployment</a>" in final.content.decode()


def test_a_viewer_polling_a_ready_version_gets_no_request_button(client, carol, alice, churn):
    from tests.factories import validated

    version = validated(register_iris_version(alice, churn))
    client.force_login(carol)
    partial = client.get(version.get_absolute_url(), headers={"HX-Request": "true"})
    assert "Ready" in partial.content.decode()
    assert "Request deployment" not in partial.content.decode()


def test_the_compare_page_shows_metric_deltas_and_changed_params(alice_client, alice, churn):
    register_iris_version(alice, churn, metrics={"auc": 0.80}, params={"depth": 3, "lr": 0.1})
    register_iris_version(alice, churn, metrics={"auc": 0.85}, params={"depth": 5, "lr": 0.1})
    response = alice_client.get("/models/churn/compare/?a=1&b=2")
    rows = {row["name"]: row for row in response.context["metric_rows"]}
    assert rows["auc"]["cells"][1]["delta"] == pytest.approx(0.05)
    params = {row["name"]: row["changed"] for row in response.context["param_rows"]}
    assert params == {"depth": True, "lr": False}
    assert "+0.05" in response.content.decode()


def test_the_compare_page_takes_more_than_two_versions(alice_client, alice, churn):
    for auc, depth in ((0.80, 3), (0.85, 5), (0.78, 3)):
        register_iris_version(alice, churn, metrics={"auc": auc}, params={"depth": depth})
    response = alice_client.get("/models/churn/compare/?v=3&v=1&v=2")
    assert [v.number for v in response.context["versions"]] == [3, 1, 2]  # v3 the baseline
    (auc,) = response.context["metric_rows"]
    deltas = [cell["delta"] for cell in auc["cells"]]
    assert deltas[0] is None and deltas[1:] == [pytest.approx(0.02), pytest.approx(0.07)]
    html = response.content.decode()
    assert "v3 (baseline)" in html and "+0.07" in html and "differs" in html
    for n in (1, 2, 3):
        assert f'name="v" value="{n}" id="compare-v{n}" checked' in html


def test_editing_and_archiving_a_version(alice_client, alice, churn):
    version = register_iris_version(alice, churn)
    alice_client.post(
        f"{version.get_absolute_url()}edit/", {"description": "Best so far", "tags": "champion"}
    )
    alice_client.post(f"{version.get_absolute_url()}archive/", {"archived": "1"})
    version.refresh_from_db()
    assert (version.description, version.archived) == ("Best so far", True)
    assert "v1" not in alice_client.get("/models/churn/").context["page"].object_list
    assert list(alice_client.get("/models/churn/?archived=1").context["page"].object_list) == [
        version
    ]


def test_the_description_is_rendered_as_sanitised_markdown(alice_client, alice, churn):
    services.update_model(
        alice, churn, description="**bold** <script>alert(1)</script> [x](javascript:alert(1))"
    )
    page = alice_client.get("/models/churn/").content.decode()
    assert "<strong>bold</strong>" in page
    assert "<script>alert(1)</script>" not in page
    assert 'href="javascript:' not in page


def test_the_model_page_says_where_each_version_is_live_now(alice_client, alice, bob, churn):
    from deployments.choices import DeploymentState
    from deployments.models import Deployment
    from tests.factories import validated

    v1, v2 = (validated(register_iris_version(alice, churn)) for _ in range(2))
    for version, name in ((v1, "churn-production"), (v2, "churn-staging")):
        target = services.create_target(bob, name=name, environment="staging")
        deployment = services.request_deployment(alice, version=version, target=target, reason="x")
        Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.SUCCEEDED)

    def count():
        with CaptureQueriesContext(connection) as queries:
            html = alice_client.get("/models/churn/").content.decode()
        return len(queries), html

    few, html = count()
    assert "v1 on churn-production" in html and "v2 on churn-staging" in html
    cells = html.split('data-testid="live-on"')[1:]
    assert "live on churn-staging" in cells[0] and "live on churn-production" in cells[1]
    validated(register_iris_version(alice, churn))  # a third version, live nowhere
    many, html = count()
    assert many == few and html.split('data-testid="live-on"')[1].count("live on") == 0
