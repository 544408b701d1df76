"""Reference data at registration: stored beside the artifact when it is CSV (or Parquet)
with the model's columns; refused, naming the field and writing nothing, otherwise."""

import io

import pandas
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from deployments import reference
from deployments.models import ModelVersion, RegisteredModel
from tests.factories import iris_artifact, register_iris_version
from tests.monitoring.drift_helpers import iris_reference_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def iris(alice):
    from deployments import services

    return services.create_model(alice, name="iris", team="botany")


def csv(text: str, name="reference.csv") -> ContentFile:
    return ContentFile(text.encode(), name=name)


def refusal(alice, iris, upload) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        register_iris_version(alice, iris, reference_data=upload)
    assert not ModelVersion.objects.exists()  # nothing half-written
    assert RegisteredModel.objects.get(pk=iris.pk).latest_version_number == 0
    return refused.value.message_dict["reference_data"]


def test_a_csv_with_the_models_columns_is_stored_and_read_through_the_field(alice, iris):
    version = register_iris_version(alice, iris, reference_data=iris_reference_csv())
    assert version.reference_data.name.startswith("reference/")
    with version.reference_data.open("rb") as handle:
        frame = reference.read_table(handle, version.reference_data.name)
    assert list(frame.columns)[:2] == ["sepal_length", "sepal_width"] and len(frame) == 150


def test_a_parquet_file_is_read_like_the_csv(alice, iris):
    table = reference.read_table(iris_reference_csv(), "reference.csv")
    parquet = io.BytesIO()
    table.to_parquet(parquet)
    upload = ContentFile(parquet.getvalue(), name="reference.parquet")
    version = register_iris_version(alice, iris, reference_data=upload)
    with version.reference_data.open("rb") as handle:
        frame = reference.read_table(handle, version.reference_data.name)
    pandas.testing.assert_frame_equal(frame, table)


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (csv("a,b\n1,2", name="reference.txt"),
         "Upload the reference data as a .csv or .parquet file."),
        (csv("", name="reference.csv"), "The reference file is empty."),
        (csv("a,b,c\n1,2,3\n"),
         "The file has 3 columns (a, b, c); the model takes 4 (the sample input's rows "
         "have 4 values)."),
        (csv("a,b,c,d\n"), "The reference file has no rows (a header row, then data)."),
        (csv("a,,c,d\n1,2,3,4\n"), "Every column needs a name in the header row."),
        (ContentFile(b"\x00\xff\xfe garbage \x00", name="reference.csv"),
         "Not a readable CSV file"),
        (ContentFile(b"not parquet at all", name="reference.parquet"),
         "Not a Parquet file (it does not start with PAR1)."),
    ],
)  # fmt: skip
def test_a_bad_reference_file_is_a_field_error_and_nothing_is_written(alice, iris, upload, message):
    assert refusal(alice, iris, upload)[0].startswith(message)


def test_the_api_answers_400_naming_the_field(api_client_for, alice, iris):
    artifact, *_ = iris_artifact()
    response = api_client_for(alice).post(
        "/api/v1/models/iris/versions/",
        {"artifact": SimpleUploadedFile("model.joblib", artifact),
         "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
         "reference_data": SimpleUploadedFile("ref.csv", b"a,b\n1,2\n")},
        format="multipart",
    )  # fmt: skip
    assert response.status_code == 400
    assert list(response.json()) == ["reference_data"]
    assert "the model takes 4" in response.json()["reference_data"][0]
    assert not ModelVersion.objects.exists()


def test_the_api_registers_with_reference_data_and_shows_it(api_client_for, alice, iris):
    artifact, *_ = iris_artifact()
    upload = iris_reference_csv()
    response = api_client_for(alice).post(
        "/api/v1/models/iris/versions/",
        {"artifact": SimpleUploadedFile("model.joblib", artifact),
         "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
         "reference_data": SimpleUploadedFile("ref.csv", upload.read())},
        format="multipart",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["reference_data"].startswith("reference/")


def test_the_form_shows_the_error_on_the_field(client, alice, iris):
    artifact, *_ = iris_artifact()
    client.force_login(alice)
    response = client.post("/models/iris/versions/new/", {
        "artifact": SimpleUploadedFile("model.joblib", artifact),
        "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
        "reference_data": SimpleUploadedFile("ref.xlsx", b"PK\x03\x04"),
    })  # fmt: skip
    assert response.status_code == 200
    assert response.context["form"].errors["reference_data"] == [
        "Upload the reference data as a .csv or .parquet file."
    ]
    assert not ModelVersion.objects.exists()


def test_columns_must_be_the_signatures_inputs_and_are_put_in_its_order():
    frame = pandas.read_csv(io.StringIO("b,a\n1,2\n"))
    ordered = reference.in_signature_order(frame, {"inputs": [{"name": "a"}, {"name": "b"}]})
    assert list(ordered.columns) == ["a", "b"] and ordered.iloc[0].tolist() == [2, 1]
    with pytest.raises(reference.ReferenceDataError) as wrong:
        reference.in_signature_order(frame, {"inputs": [{"name": "a"}, {"name": "c"}]})
    assert str(wrong.value) == (
        "The reference columns are not the model signature's inputs; missing: c; not inputs: b."
    )


def test_validation_refuses_reference_columns_that_are_not_the_signatures(alice):
    from deployments import services
    from deployments.demo import churn_data
    from deployments.services import validate_version
    from tests.factories import lightgbm_zip

    services.create_model(alice, name="churn")
    frame, _ = churn_data()
    good = frame.head(200)[list(reversed(frame.columns))]  # any order: put in the signature's
    version = services.register_version(
        alice, "churn", artifact=ContentFile(lightgbm_zip(), name="churn.zip"),
        reference_data=ContentFile(good.to_csv(index=False).encode(), name="ref.csv"),
    )  # fmt: skip
    assert validate_version(version.pk).status == "ready"

    wrong = frame.head(200).rename(columns={frame.columns[0]: "not_a_column"})
    version = services.register_version(
        alice, "churn", artifact=ContentFile(lightgbm_zip(), name="churn.zip"),
        reference_data=ContentFile(wrong.to_csv(index=False).encode(), name="ref.csv"),
    )  # fmt: skip
    checked = validate_version(version.pk)
    assert checked.status == "invalid"
    assert checked.status_detail.startswith(
        "reference_data: The reference columns are not the model signature's inputs; "
        f"missing: {frame.columns[0]}; not inputs: not_a_column."
    )
