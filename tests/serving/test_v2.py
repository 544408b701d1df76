"""The Open Inference Protocol (V2) of the model server, run as a real process: an MLflow
LightGBM model loaded with mlflow.pyfunc, and a joblib pickle."""

import httpx
import lightgbm
import numpy
import pandas
import pytest

from monitoring.scraping import read_counters
from tests.factories import iris_artifact, lightgbm_model_folder
from tests.serving.test_model_server import MODEL, VERSION, start_server, stop_server, write_iris

FEATURES = ["tenure_months", "monthly_spend", "support_tickets", "logins_per_week"]
ROWS = [[12.0, 70.5, 3.0, 1.5], [60.0, 40.0, 0.0, 9.0], [3.0, 99.0, 5.0, 0.2]]


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("v2-mlflow")
    folder = lightgbm_model_folder()[0]
    process, url = start_server(folder, directory / "server.log", flavor="mlflow")
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def sklearn_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("v2-sklearn")
    process, url = start_server(write_iris(directory), directory / "server.log")
    try:
        yield url
    finally:
        stop_server(process)


def expected_lightgbm(rows) -> list[float]:
    booster = lightgbm.Booster(model_file=str(lightgbm_model_folder()[0] / "model.lgb"))
    return booster.predict(pandas.DataFrame(rows, columns=FEATURES)).tolist()


def infer(url, body, model=MODEL):
    return httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=10)


def test_health_and_server_metadata(mlflow_url):
    assert httpx.get(f"{mlflow_url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{mlflow_url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{mlflow_url}/v2").json()["version"] == "2"
    ready = httpx.get(f"{mlflow_url}/v2/models/{MODEL}/ready").json()
    assert ready == {"name": MODEL, "ready": True}


def test_model_metadata_comes_from_the_signature(mlflow_url):
    body = httpx.get(f"{mlflow_url}/v2/models/{MODEL}").json()
    assert body == {
        "name": MODEL,
        "versions": [str(VERSION)],
        "platform": "mlflow",
        "inputs": [{"name": name, "datatype": "FP64", "shape": [-1]} for name in FEATURES],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
    }
    same = httpx.get(f"{mlflow_url}/v2/models/{MODEL}/versions/{VERSION}").json()
    assert same == body


def test_infer_with_one_input_per_column(mlflow_url):
    columns = list(zip(*ROWS, strict=True))
    body = {
        "id": "req-1",
        "inputs": [
            {"name": name, "shape": [3], "datatype": "FP64", "data": list(values)}
            for name, values in zip(FEATURES, columns, strict=True)
        ],
    }
    answer = infer(mlflow_url, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["model_name"], result["model_version"], result["id"]) == (MODEL, "3", "req-1")
    [output] = result["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("predict", "FP64", [3])
    assert numpy.allclose(output["data"], expected_lightgbm(ROWS))


def test_infer_with_one_matrix_input_nested_or_flat(mlflow_url):
    nested = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]}
    flat_data = [value for row in ROWS for value in row]
    flat = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": flat_data}]}
    for body in (nested, flat):
        result = infer(mlflow_url, body).json()
        assert numpy.allclose(result["outputs"][0]["data"], expected_lightgbm(ROWS), atol=1e-6)
        assert result["id"]  # one is made up when the request has none


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 400, 'The body has no "inputs"'),
        ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1.0]}]}, 400,
         "inputs[0] has 1 values; its shape [2, 4] needs 8."),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1] * 4}]}, 400,
         "inputs[0].datatype must be one of"),
        ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}, 400,
         "Model is missing inputs"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": ["a"]}]}, 400,
         "inputs[0].data does not fit FP64"),
        ({"inputs": [{"name": "", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
         "inputs[0].name must be a non-empty string."),
    ],
)  # fmt: skip
def test_bad_requests_are_400_with_the_reason(mlflow_url, body, status, message):
    answer = infer(mlflow_url, body)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_unknown_models_versions_and_methods(mlflow_url):
    assert infer(mlflow_url, {}, model="other").json() == {
        "error": f"Unknown model 'other'; this server serves '{MODEL}'."
    }
    assert httpx.get(f"{mlflow_url}/v2/models/{MODEL}/versions/9").status_code == 404
    wrong_method = httpx.get(f"{mlflow_url}/v2/models/{MODEL}/infer")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


def test_the_old_predict_path_serves_the_mlflow_model_too(mlflow_url):
    answer = httpx.post(f"{mlflow_url}/predict", json={"instances": ROWS}).json()
    assert numpy.allclose(answer["predictions"], expected_lightgbm(ROWS))


def test_a_joblib_model_speaks_v2_as_well(sklearn_url):
    _, _, _, sample = iris_artifact()
    metadata = httpx.get(f"{sklearn_url}/v2/models/{MODEL}").json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    body = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": sample}]}
    result = infer(sklearn_url, body).json()
    predicted = httpx.post(f"{sklearn_url}/predict", json={"instances": sample}).json()
    assert result["outputs"][0]["data"] == predicted["predictions"]
    assert result["outputs"][0]["datatype"] == "INT64"


def test_whole_numbers_fit_double_columns(mlflow_url):
    """JSON has no int/float distinction: 12 is a double where the signature says so."""
    rows = [[12, 70, 3, 1]]
    predicted = httpx.post(f"{mlflow_url}/predict", json={"instances": rows})
    assert predicted.status_code == 200, predicted.text
    assert numpy.allclose(predicted.json()["predictions"], expected_lightgbm(rows))
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": rows}]}
    answer = infer(mlflow_url, body)
    assert answer.status_code == 200, answer.text
    assert numpy.allclose(answer.json()["outputs"][0]["data"], expected_lightgbm(rows))


def test_v2_predictions_are_counted_in_the_metrics_the_portal_scrapes(sklearn_url):
    def counters():
        return read_counters(httpx.get(f"{sklearn_url}/metrics").text)

    before = counters()
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                        "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}  # fmt: skip
    assert infer(sklearn_url, body).status_code == 200
    after = counters()
    assert after["requests"] - before["requests"] == 1
    assert after["count"] - before["count"] == 1  # timed like /predict
    made = sum(after["predictions"].values()) - sum(before["predictions"].values())
    assert made == 2
