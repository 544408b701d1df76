"""MLflow models as artifacts: uploaded as an archive, read and validated with mlflow.pyfunc.

Validation runs in this process (the worker's service function); the worker itself is
exercised by tests/deploy/test_mlflow_e2e.py."""

import io
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml
from django.core.files.base import ContentFile

from deployments import services
from deployments.choices import Flavor, VersionStatus
from deployments.serving import mlflow_model
from tests.factories import lightgbm_model_folder, lightgbm_zip, validated

FEATURES = ["tenure_months", "monthly_spend", "support_tickets", "logins_per_week"]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Validation's temporary folders go under tmp_path/work, so a test can see every file
    written: nothing may land beside `work`."""
    lightgbm_model_folder()  # the session's copy lives elsewhere
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    return tmp_path


def register(alice, churn, data: bytes, name="model.zip", **fields):
    return services.register_version(
        alice, churn.name, artifact=ContentFile(data, name=name), **fields
    )


def model_folder_copy(tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(lightgbm_model_folder()[0], folder)
    return folder


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def folder_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_a_zipped_lightgbm_model_validates_on_its_own_input_example(alice, churn, private_tmp):
    version = register(alice, churn, lightgbm_zip())
    assert version.flavor == Flavor.MLFLOW  # detected from the archive
    version = validated(version)
    assert version.status == VersionStatus.READY, version.status_detail
    assert version.status_detail.startswith("Loaded and predicted 3 sample rows: [0.")
    assert "(the model's input_example)" in version.status_detail
    assert version.mlflow_flavors == ["lightgbm", "python_function"]
    assert [c["name"] for c in version.signature["inputs"]] == FEATURES
    assert {c["type"] for c in version.signature["inputs"]} == {"double"}
    assert version.signature["outputs"][0]["type"] == "tensor float64 [-1]"
    assert "lightgbm==4.7.0" in version.requirements
    assert version.missing_requirements == mlflow_model.missing_requirements(version.requirements)
    assert len(version.artifact_sha256) == 64
    assert list((private_tmp / "work").iterdir()) == []  # the unpacked copy is gone
    assert sorted(p.name for p in private_tmp.iterdir()) == ["work"]


def test_a_tar_gz_model_predicts_on_the_given_sample_input(alice, churn, tmp_path):
    folder, _, _, sample = lightgbm_model_folder()
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(folder, arcname="model")  # wrapped in a folder, as people do
    version = validated(
        register(alice, churn, archive.read_bytes(), "m.tar.gz", sample_input=sample)
    )
    assert version.status == VersionStatus.READY, version.status_detail
    assert "input_example" not in version.status_detail


def test_the_version_page_shows_flavor_signature_and_requirements(client, alice, churn):
    version = validated(register(alice, churn, lightgbm_zip()))
    client.force_login(alice)
    page = client.get(version.get_absolute_url()).content.decode()
    assert "MLflow model (pyfunc)" in page and ">lightgbm</span>" in page
    assert "<code>tenure_months</code></td><td>double</td>" in page
    assert "<code>lightgbm==4.7.0</code>" in page


def test_the_api_shows_the_facts(api_client_for, alice, churn):
    version = validated(register(alice, churn, lightgbm_zip()))
    body = api_client_for(alice).get(f"/api/v1/models/churn/versions/{version.number}/").json()
    assert body["flavor"] == "mlflow"
    assert body["mlflow_flavors"] == ["lightgbm", "python_function"]
    assert body["signature"]["inputs"][0] == {"name": "tenure_months", "type": "double"}
    assert "lightgbm==4.7.0" in body["requirements"]


def test_missing_requirements_are_named_without_installing_anything(alice, churn, tmp_path):
    folder = model_folder_copy(tmp_path)
    pinned = (folder / "requirements.txt").read_text()
    (folder / "requirements.txt").write_text(pinned + "\nno-such-package-xyz==1.0\nlightgbm>=99\n")
    files = folder_files(folder)
    version = validated(register(alice, churn, zipped(files)))
    assert version.status == VersionStatus.READY, version.status_detail
    assert "no-such-package-xyz==1.0 (not installed)" in version.missing_requirements
    assert "lightgbm>=99 (installed 4.7.0)" in version.missing_requirements
    assert "Pinned requirements not installed here: " in version.status_detail
    assert "no-such-package-xyz==1.0 (not installed)" in version.status_detail


def test_requirements_come_from_conda_yaml_when_there_is_no_requirements_txt(tmp_path):
    folder = model_folder_copy(tmp_path)
    (folder / "requirements.txt").unlink()
    (folder / "python_env.yaml").unlink()
    facts = mlflow_model.read_facts(folder)
    assert "lightgbm==4.7.0" in facts.requirements


@pytest.mark.parametrize(
    "mlmodel, reason",
    [
        (b"flavors: [unclosed\n  : - ", "MLmodel is not valid YAML"),
        (b"- just\n- a list\n", "MLmodel is not a YAML mapping"),
        (b"artifact_path: model\n", "MLmodel lists no flavors"),
        (b"flavors:\n  lightgbm:\n    data: model.lgb\n", "MLmodel has no python_function flavor"),
    ],
)
def test_a_broken_mlmodel_makes_the_version_invalid_with_the_reason(
    alice, churn, tmp_path, mlmodel, reason
):
    files = folder_files(lightgbm_model_folder()[0])
    files["MLmodel"] = mlmodel
    version = validated(register(alice, churn, zipped(files)))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail.startswith(reason)
    assert version.flavor == Flavor.MLFLOW


def test_a_failing_predict_makes_the_version_invalid(alice, churn):
    version = validated(register(alice, churn, lightgbm_zip(), sample_input=[[1.0, 2.0]]))
    assert version.status == VersionStatus.INVALID
    assert "Model is missing inputs" in version.status_detail


def test_a_model_without_an_input_example_or_sample_input_is_only_loaded(alice, churn):
    files = folder_files(lightgbm_model_folder()[0])
    spec = yaml.safe_load(files["MLmodel"])
    del spec["saved_input_example_info"]
    files["MLmodel"] = yaml.safe_dump(spec).encode()
    version = validated(register(alice, churn, zipped(files)))
    assert version.status == VersionStatus.READY
    assert version.status_detail == (
        "Loaded; no sample input or input_example was given to predict on."
    )


def test_a_zip_without_mlmodel_is_invalid(alice, churn):
    version = validated(register(alice, churn, zipped({"model.pkl": b"x"})))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail == (
        "The artifact is a folder without an MLmodel file: not an MLflow model."
    )


def test_a_joblib_pickle_without_a_sample_input_is_only_loaded(alice, churn):
    from django.core.exceptions import ValidationError

    from tests.factories import iris_artifact

    version = validated(register(alice, churn, iris_artifact()[0], "model.joblib"))
    assert version.status == VersionStatus.READY
    assert version.status_detail.startswith("Loaded; no sample input")
    with pytest.raises(ValidationError) as excinfo:  # given, it must hold rows
        register(alice, churn, iris_artifact()[0], "model.joblib", sample_input=[])
    assert "sample_input" in excinfo.value.message_dict


def test_the_form_takes_a_zipped_mlflow_model_without_a_sample_input(client, alice, churn):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    form = client.get("/models/churn/versions/new/").content.decode()
    assert "Detect from the artifact" in form
    response = client.post(
        "/models/churn/versions/new/",
        {"artifact": SimpleUploadedFile("churn.zip", lightgbm_zip()), "flavor": ""},
    )
    assert response.status_code == 302, response.context["form"].errors
    version = churn.versions.get()
    assert (version.flavor, version.sample_input) == (Flavor.MLFLOW, [])


def test_an_mlflow_sample_input_may_be_records_by_column_name(alice, churn):
    _, _, _, sample = lightgbm_model_folder()
    records = [dict(zip(FEATURES, row, strict=True)) for row in sample]
    version = validated(register(alice, churn, lightgbm_zip(), sample_input=records))
    assert version.status == VersionStatus.READY, version.status_detail
    assert version.status_detail.startswith("Loaded and predicted 3 sample rows")


def test_a_model_that_does_not_load_names_its_missing_requirements(alice, churn):
    files = folder_files(lightgbm_model_folder()[0])
    spec = yaml.safe_load(files["MLmodel"])
    spec["flavors"]["python_function"]["loader_module"] = "catboost_flavor_not_here"
    files["MLmodel"] = yaml.safe_dump(spec).encode()
    files["requirements.txt"] = b"mlflow\ncatboost-flavor-not-here==1.2\n"
    version = validated(register(alice, churn, zipped(files)))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail.startswith("mlflow.pyfunc could not load the model: ")
    assert version.status_detail.endswith(
        "Missing requirements: catboost-flavor-not-here==1.2 (not installed)."
    )
    assert version.missing_requirements == ["catboost-flavor-not-here==1.2 (not installed)"]
