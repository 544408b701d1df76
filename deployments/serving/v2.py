"""The Open Inference Protocol (V2, as KServe and MLServer speak it) for the model server.

    GET  /v2                                  server metadata
    GET  /v2/health/live, /v2/health/ready    {"live": true}, {"ready": true}
    GET  /v2/models/{name}[/versions/{v}]     model metadata: inputs and outputs with types
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

An inference request carries tensors: {"inputs": [{"name", "shape", "datatype", "data"}]}.
For a model whose signature names columns (an MLflow model logged from a data frame), each
input is one column (shape [N] or [N, 1]), or one input holds every column ([N, columns], in
the signature's order). A joblib model takes one [N, features] input, or one column per
input. The response carries the predictions as tensors the same way: one output per column
of a data frame, else one output named after the signature's output (or "predict").

No Django here; `handle` answers a request given the loaded model, its name and version.
"""

import math
import uuid

from deployments.serving.loading import InputError, check_instances, predict
from deployments.serving.mlflow_model import MlflowInputError, MlflowModel, MlflowModelError

SERVER_NAME = "mlops-portal-model-server"
PROTOCOL_VERSION = "2"

# V2 datatype -> numpy dtype name
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
NUMPY_TO_V2 = {numpy_name: v2 for v2, numpy_name in DATATYPES.items()}
# MLflow column types -> V2 datatype
MLFLOW_COLUMN_TYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


class V2Error(Exception):
    """Answer with `status` and {"error": message}."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def handle(method: str, path: str, model, name: str, version: int, read_json) -> dict:
    """Answer one V2 request; `read_json()` reads the request body. Returns the JSON
    payload of a 200, or raises V2Error."""
    parts = [part for part in path.split("/") if part][1:]  # after "v2"
    if not parts:
        return _only(method, "GET", {"name": SERVER_NAME, "version": PROTOCOL_VERSION})
    if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        return _only(method, "GET", {parts[1]: True})
    if parts[0] != "models" or len(parts) < 2:
        raise V2Error(404, f"No such V2 path {path!r}.")
    asked, rest = parts[1], parts[2:]
    if asked != name:
        raise V2Error(404, f"Unknown model {asked!r}; this server serves {name!r}.")
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or rest[1] != str(version):
            asked_version = rest[1] if len(rest) > 1 else ""
            raise V2Error(404, f"Unknown version {asked_version!r}; this server serves {version}.")
        rest = rest[2:]
    if not rest:
        return _only(method, "GET", metadata(model, name, version))
    if rest == ["ready"]:
        return _only(method, "GET", {"name": name, "ready": True})
    if rest == ["infer"]:
        if method != "POST":
            raise V2Error(405, f"{path} accepts POST only.", (("Allow", "POST"),))
        return infer(model, name, version, read_json())
    raise V2Error(404, f"No such V2 path {path!r}.")


def is_infer(path: str) -> bool:
    """Whether `path` is an inference request (of any model name or version)."""
    return path.startswith("/v2/models/") and path.endswith("/infer")


def _only(method: str, allowed: str, payload: dict) -> dict:
    if method not in (allowed, "HEAD"):
        raise V2Error(405, f"This path accepts {allowed} only.", (("Allow", allowed),))
    return payload


# --- metadata ---------------------------------------------------------------------------


def metadata(model, name: str, version: int) -> dict:
    """The model's name, version, platform and typed inputs and outputs."""
    if isinstance(model, MlflowModel):
        signature = model.facts.signature
        inputs = [
            _tensor_meta(spec, f"input-{i}") for i, spec in enumerate(signature.get("inputs", []))
        ]
        specs = signature.get("outputs", [])
        # One unnamed output is "predict", as infer names it.
        outputs = [
            _tensor_meta(spec, "predict" if len(specs) == 1 else f"output-{i}")
            for i, spec in enumerate(specs)
        ]
        platform = "mlflow"
    else:
        width = getattr(model, "n_features_in_", -1)
        inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, int(width)]}]
        outputs = []
        platform = "sklearn"
    return {
        "name": name,
        "versions": [str(version)],
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs or [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
    }


def _tensor_meta(spec: dict, default_name: str) -> dict:
    if "dtype" in spec:  # a tensor spec
        datatype = NUMPY_TO_V2.get(spec["dtype"], "BYTES")
        return {
            "name": spec.get("name") or default_name,
            "datatype": datatype,
            "shape": spec["shape"],
        }
    datatype = MLFLOW_COLUMN_TYPES.get(spec.get("type", ""), "BYTES")
    return {"name": spec.get("name") or default_name, "datatype": datatype, "shape": [-1]}


# --- inference --------------------------------------------------------------------------


def infer(model, name: str, version: int, payload) -> dict:
    """Decode the request's tensors, predict, encode the predictions as tensors."""
    if not isinstance(payload, dict):
        raise V2Error(400, 'The body must be a JSON object: {"inputs": [{...}]}.')
    tensors = [_decode(tensor, index) for index, tensor in enumerate(_inputs(payload))]
    try:
        predictions = _predict(model, tensors)
    except (InputError, MlflowInputError) as exc:
        raise V2Error(400, str(exc)) from exc
    except MlflowModelError as exc:
        raise V2Error(500, str(exc)) from exc
    outputs = _encode(predictions, _output_names(model))
    wanted = [o.get("name") for o in payload.get("outputs") or [] if isinstance(o, dict)]
    if wanted:
        outputs = [output for output in outputs if output["name"] in wanted] or outputs
    request_id = payload.get("id")
    return {
        "model_name": name,
        "model_version": str(version),
        "id": request_id if isinstance(request_id, str) and request_id else str(uuid.uuid4()),
        "parameters": {},
        "outputs": outputs,
    }


def _inputs(payload: dict) -> list:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error(
            400,
            'The body has no "inputs"; send {"inputs": [{"name": "x", "shape": [1, 4], '
            '"datatype": "FP64", "data": [...]}]}.',
        )
    return inputs


def _decode(tensor, index: int):
    """(name, numpy array) of one request input, or V2Error naming what is wrong."""
    import numpy

    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise V2Error(400, f"{where} must be an object with name, shape, datatype and data.")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise V2Error(400, f"{where}.name must be a non-empty string.")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise V2Error(400, f"{where}.shape must be a list of non-negative integers, e.g. [2, 4].")
    if datatype not in DATATYPES:
        raise V2Error(400, f"{where}.datatype must be one of {', '.join(DATATYPES)}.")
    flat = _flatten(tensor.get("data"), where)
    if len(flat) != math.prod(shape):
        raise V2Error(
            400, f"{where} has {len(flat)} values; its shape {shape} needs {math.prod(shape)}."
        )
    if len(flat) > 10_000 * 1_000:
        raise V2Error(413, f"{where} is too large.")
    try:
        array = numpy.asarray(flat, dtype=DATATYPES[datatype]).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise V2Error(400, f"{where}.data does not fit {datatype}: {exc}") from exc
    if array.dtype.kind == "f" and not numpy.isfinite(array).all():
        raise V2Error(400, f"{where}.data must contain only finite numbers.")
    return name, array


def _flatten(data, where: str) -> list:
    if not isinstance(data, list):
        raise V2Error(400, f"{where}.data must be a list (flat, or nested like the shape).")
    flat, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, dict) or item is None:
                raise V2Error(400, f"{where}.data must hold plain values.")
            flat.append(item)
        else:
            stack.pop()
    return flat


def _predict(model, tensors: list):
    """Predict from decoded tensors: columns by name, or one matrix."""
    import pandas

    if isinstance(model, MlflowModel):
        columns = model.input_names
        if columns and all(name in columns for name, _ in tensors) and len(tensors) > 1:
            return model.predict(model.typed(pandas.DataFrame(_columns(tensors))[columns]))
        if len(tensors) == 1:
            name, array = tensors[0]
            if columns and array.ndim == 2 and array.shape[1] == len(columns):
                return model.predict(model.typed(pandas.DataFrame(array, columns=columns)))
            if columns == [name]:
                return model.predict(model.typed(pandas.DataFrame({name: array.reshape(-1)})))
            return model.predict(array)
        if columns:
            expected = ", ".join(columns)
            raise InputError(f"Send one input per column ({expected}) or one [N, columns] input.")
        return model.predict(pandas.DataFrame(_columns(tensors)))
    if len(tensors) == 1:
        rows = tensors[0][1]
        rows = rows.reshape(-1, 1) if rows.ndim == 1 else rows
    else:
        import numpy

        rows = numpy.column_stack([array.reshape(-1) for _, array in tensors])
    return predict(model, check_instances(rows.tolist()))


def _columns(tensors: list) -> dict:
    lengths = {array.reshape(-1).shape[0] for _, array in tensors}
    if len(lengths) != 1:
        raise InputError("Every column input must have the same number of rows.")
    for name, array in tensors:
        if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
            raise InputError(f"Input {name!r} must have shape [N] or [N, 1] as one column.")
    return {name: array.reshape(-1) for name, array in tensors}


def _output_names(model) -> list[str]:
    if isinstance(model, MlflowModel):
        return [spec.get("name") or "" for spec in model.facts.signature.get("outputs", [])]
    return []


def _encode(predictions, names: list[str]) -> list[dict]:
    import numpy

    if hasattr(predictions, "columns") and hasattr(predictions, "to_numpy"):  # a data frame
        return [
            _tensor(str(column), predictions[column].to_numpy()) for column in predictions.columns
        ]
    if isinstance(predictions, dict):
        return [_tensor(str(key), numpy.asarray(value)) for key, value in predictions.items()]
    name = names[0] if len(names) == 1 and names[0] else "predict"
    return [_tensor(name, numpy.asarray(predictions))]


def _tensor(name: str, array) -> dict:
    import numpy

    datatype = NUMPY_TO_V2.get(array.dtype.name)
    if datatype is None or datatype == "BYTES":
        datatype, data = "BYTES", [str(value) for value in array.reshape(-1).tolist()]
    else:
        if array.dtype.kind == "f" and not numpy.isfinite(array).all():
            raise V2Error(500, "The model returned NaN or infinity, which JSON cannot carry.")
        data = array.reshape(-1).tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def rows_of(inputs) -> list[list]:
    """An inference request's inputs as rows, for the prediction log: one [N, columns]
    input as its N rows, else one column per input, zipped. Called after `infer` accepted
    the request, so the inputs are well formed."""
    if len(inputs) == 1:
        tensor = inputs[0]
        flat = _flatten(tensor["data"], "inputs[0]")
        shape = tensor["shape"]
        width = math.prod(shape[1:]) if len(shape) > 1 else 1
        return [flat[i : i + width] for i in range(0, len(flat), width)]
    columns = [_flatten(tensor["data"], f"inputs[{i}]") for i, tensor in enumerate(inputs)]
    return [list(row) for row in zip(*columns, strict=False)]
