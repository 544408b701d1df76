"""The hot reads of /api/v1/ versions (one version; the unfiltered list) answer from one
compiled query each, built into the response by hand: they must answer byte for byte what
the serializer answers from the model instances, and what the general (filtered) list
path answers, aliases, counts and pages included."""

import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from deployments.api.serializers import ModelVersionSerializer
from deployments.api.views import VERSION_PAGE, VERSION_ROW
from deployments.models import ModelVersion
from deployments.services import aliases
from mlops_portal.core.api.negotiation import PortalContentNegotiation
from mlops_portal.core.api.renderers import FastJSONRenderer
from tests.factories import register_iris_version

pytestmark = pytest.mark.django_db

URL = "/api/v1/models/churn/versions/"


@pytest.fixture
def versions(alice, churn):
    """Five versions of churn with JSON of every kind, three of them with aliases."""
    made = [
        register_iris_version(
            alice,
            churn,
            tags=["b", "c.d"][: n % 3],
            metrics={"rmse": 1e-07, "auc": 0.912345678901234, "n": n},
            params={"nested": {"list": [1, 2.5, None, True], "text": 'a "quoted", b: c\n'}},
            description=f'Version {n}: ünïcode, "quotes" and \\ backslash.',
        )
        for n in range(5)
    ]
    aliases.set_alias(alice, churn, "champion", 2)
    aliases.set_alias(alice, churn, "Zeta", 2)
    aliases.set_alias(alice, churn, "b-2", 2)
    aliases.set_alias(alice, churn, "canary", 4)
    return made


def rendered(data) -> bytes:
    return FastJSONRenderer().render(data)


def as_serialized(version: ModelVersion) -> dict:
    """What the serializer answers for the version read as a model instance."""
    return ModelVersionSerializer(ModelVersion.objects.for_api().get(pk=version.pk)).data


def test_one_version_answers_what_the_serializer_does(api_client_for, alice, versions):
    api = api_client_for(alice)
    for version in versions:
        response = api.get(f"{URL}{version.number}/")
        assert response.status_code == 200
        assert response.content == rendered(as_serialized(version))
    assert api.get(f"{URL}4/").json()["aliases"] == ["canary"]
    assert api.get(f"{URL}2/").json()["aliases"] == ["Zeta", "b-2", "champion"]


def test_the_list_answers_what_the_serializer_and_the_filtered_path_do(
    api_client_for, alice, versions
):
    api = api_client_for(alice)
    newest_first = [as_serialized(v) for v in reversed(versions)]
    for query, expected in [
        ("", newest_first),
        ("?page_size=2", newest_first[:2]),
        ("?page_size=2&page=2", newest_first[2:4]),
        ("?page_size=2&page=3", newest_first[4:]),
    ]:
        fast = api.get(URL + query)
        assert fast.status_code == 200
        assert fast.json()["count"] == 5
        assert rendered(fast.json()["results"]) == rendered(expected)
        # The same page through the general path: a filter every version passes.
        general = api.get(URL + (query + "&" if query else "?") + "archived=false")
        assert fast.content == general.content.replace(b"archived=false&", b"").replace(
            b"&archived=false", b""
        )


def test_the_list_and_one_version_are_one_query_after_the_token(
    api_client_for, alice, versions, django_assert_num_queries
):
    api = api_client_for(alice)
    api.get(URL)  # the token's first use is recorded once
    with django_assert_num_queries(2):  # token, the page with its count and aliases
        api.get(URL + "?page_size=2&page=2")
    with django_assert_num_queries(2):  # token, the version with its aliases
        api.get(f"{URL}3/")


def test_empty_pages_and_unknown_models_answer_as_before(api_client_for, alice, churn):
    api = api_client_for(alice)
    assert api.get(URL).json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert api.get(URL + "?page=2").json() == {"detail": "Invalid page."}
    assert api.get(URL + f"?page={10**30}").status_code == 404
    unknown = api.get("/api/v1/models/nope/versions/")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": "No RegisteredModel matches the given query."},
    )
    register_iris_version(alice, churn)
    past = api.get(URL + "?page_size=1&page=2")
    assert (past.status_code, past.json()) == (404, {"detail": "Invalid page."})
    assert api.get(f"{URL}2/").json() == {"detail": "No ModelVersion matches the given query."}


def test_the_compiled_rows_are_the_serializers_rows(versions):
    version = versions[2]
    [row] = VERSION_ROW.rows("churn", version.number)
    assert row == as_serialized(version)
    page = VERSION_PAGE.rows("churn", limit=2, offset=1)
    assert [total for total, _ in page] == [5, 5]
    assert [row for _, row in page] == [as_serialized(v) for v in (versions[3], versions[2])]


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "text/html", "application/json; indent=4", "", "x/y"],
)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api"])
def test_content_negotiation_answers_as_drfs(accept, query):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/models/" + query, **headers))
    from rest_framework.renderers import BrowsableAPIRenderer

    renderers = [FastJSONRenderer(), BrowsableAPIRenderer()]

    def outcome(negotiation):
        try:
            renderer, media_type = negotiation.select_renderer(request, renderers)
        except Exception as error:  # the same refusal is the point
            return type(error)
        return type(renderer), media_type

    assert outcome(PortalContentNegotiation()) == outcome(DefaultContentNegotiation())


@pytest.mark.parametrize("path", ["/api/v1/models/", URL, f"{URL}4/", f"{URL}?status=ready"])
def test_the_browsable_api_shows_the_reads_in_html(client, alice, versions, path):
    """A logged-in user opening the API in a browser gets DRF's HTML page (its filter form
    needs the real queryset, not the compiled reads'), with the same data in it."""
    client.force_login(alice)
    response = client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    shows_version_3 = path in (URL, f"{URL}4/")  # number 4 is described "Version 3: …"
    assert ("Version 3:" in response.content.decode()) == shows_version_3
