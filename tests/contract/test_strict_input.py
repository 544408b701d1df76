"""What the schema says is what the API takes: a value of another JSON type, a query
parameter that is not what it declares, a body naming a missing object, an unknown URL
under /api/, each answered with the shared error shape, naming what is wrong."""

import pytest

from deployments import services as registry
from tests.factories import register_iris_version


@pytest.fixture
def iris(alice):
    model = registry.create_model(alice, name="iris", team="botany")
    register_iris_version(alice, model)
    return model


@pytest.mark.parametrize(
    ("url", "body", "errors"),
    [
        ("/api/v1/models/", {"name": 5}, {"name": ["Not a valid string."]}),
        (
            "/api/v1/models/",
            {"name": "x", "tags": "a,b"},
            {"tags": ["Expected a list, got a string."]},
        ),
        (
            "/api/v1/models/",
            {"name": "x", "tags": [""]},
            {"tags": {"0": ["This field may not be blank."]}},
        ),
        (
            "/api/v1/deployments/",
            {"model": "iris", "version": "1", "target": "t", "reason": "r"},
            {"version": ["A valid integer is required."]},
        ),
        (
            "/api/v1/deployments/",
            {"model": "iris", "version": 1.0, "target": "t", "reason": "r"},
            {"version": ["A valid integer is required."]},
        ),
        (
            "/api/v1/models/iris/versions/",
            {"artifact_uri": "https://x.example/m", "sample_input": "[[1]]"},
            {"sample_input": ["Expected a list, got a string."]},
        ),
        (
            "/api/v1/targets/",
            {"name": "t", "environment": "staging", "auto_rollback": "yes"},
            {"auto_rollback": ["Must be a valid boolean."]},
        ),
    ],
)
def test_a_json_value_of_another_type_is_a_400_naming_the_field(
    api_client_for, bob, iris, url, body, errors
):
    response = api_client_for(bob).post(url, body, format="json")
    assert (response.status_code, response.json()) == (400, errors)


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("?until=", {"until": ["Give a value, or leave the parameter out."]}),
        ("?version=1.5", {"version": ["Enter a whole number."]}),
        (
            "?state=lost",
            {"state": ["Select a valid choice. lost is not one of the available choices."]},
        ),
        ("?page_size=0", {"page_size": ["Use a whole number of 1 or more."]}),
        ("?page_size=201", {"page_size": ["Use at most 200."]}),
        ("?page=x", {"page": ["Use a whole number of 1 or more."]}),
    ],
)
def test_a_query_parameter_that_is_not_what_it_declares_is_a_400(
    api_client_for, bob, query, errors
):
    response = api_client_for(bob).get(f"/api/v1/deployments/{query}")
    assert (response.status_code, response.json()) == (400, errors)


def test_text_filters_still_take_empty_text_and_pages_past_the_end_are_404s(
    api_client_for, bob, iris
):
    api = api_client_for(bob)
    assert api.get("/api/v1/models/?q=&team=").json()["count"] == 1
    assert api.get("/api/v1/models/iris/versions/?archived=false").json()["count"] == 1
    assert api.get("/api/v1/models/iris/versions/?archived=null").status_code == 400
    assert api.get("/api/v1/models/?page=2").status_code == 404


def test_forms_are_refused_where_json_is_expected(api_client_for, bob):
    response = api_client_for(bob).post("/api/v1/models/", {"name": "x"}, format="multipart")
    assert response.status_code == 415
    assert "detail" in response.json()


def test_a_body_naming_a_missing_object_is_a_400_and_an_unknown_url_a_json_404(api_client_for, bob):
    api = api_client_for(bob)
    response = api.post("/api/v1/incidents/", {"title": "Slow", "target": "nowhere"}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"target": ["No target with this name."]},
    )
    response = api.post("/api/v1/checks/0.5/pause/")
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
