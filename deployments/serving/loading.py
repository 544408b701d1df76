"""Loading a model artifact and predicting with it.

Shared by the validation job (does a registered version load and predict?) and by the
model server that the local deploy backend starts, so both judge an artifact the same way.
"""

import hashlib
import math
from pathlib import Path

from deployments.serving import mlflow_model
from deployments.serving.mlflow_model import MlflowInputError, MlflowModel, MlflowModelError

MAX_INSTANCES = 10_000
FLAVORS = ("sklearn", "mlflow")


class ArtifactError(Exception):
    """The artifact cannot be loaded, or the model cannot predict; the message says why."""


class InputError(ValueError):
    """The instances given to `predict` are malformed; the message is for the caller."""


def file_digest(path: str | Path) -> tuple[str, int]:
    """Return the SHA-256 hex digest and the size in bytes of the file at `path`."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def path_digest(path: str | Path) -> tuple[str, int]:
    """The SHA-256 and size of a file, or of a folder: the digest of its sorted manifest
    ("<sha256>  <relative path>" per file, as sha256sum prints it) and its total size."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    manifest, total = [], 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest, size = file_digest(file)
        manifest.append(f"{digest}  {file.relative_to(path).as_posix()}\n")
        total += size
    return hashlib.sha256("".join(manifest).encode()).hexdigest(), total


def load_model(path: str | Path, flavor: str):
    """Load the artifact at `path` with its flavor; raise ArtifactError if it is unusable.

    "sklearn": a joblib pickle with predict(); "mlflow": a folder with an MLmodel file,
    loaded with mlflow.pyfunc (any flavor that has python_function)."""
    if flavor not in FLAVORS:
        raise ArtifactError(f"Unknown flavor {flavor!r}; supported: {', '.join(FLAVORS)}.")
    if flavor == "mlflow":
        try:
            return mlflow_model.load(path)
        except MlflowModelError as exc:
            raise ArtifactError(str(exc)) from exc
    import joblib  # imported here so the model server starts only what it needs

    try:
        model = joblib.load(path)
    except Exception as exc:  # a corrupt pickle raises anything from EOFError to KeyError
        raise ArtifactError(unloadable_message(exc)) from exc
    if not callable(getattr(model, "predict", None)):
        raise ArtifactError(f"The artifact holds a {type(model).__name__}, which has no predict().")
    return model


SAVE_HINT = (
    'Save the fitted estimator with joblib.dump(model, "model.joblib") and upload that file.'
)


def unloadable_message(exc: Exception) -> str:
    """What a person can act on when joblib cannot read a file: what is wrong and how to
    make a file that loads, then the raw error for whoever debugs it."""
    if isinstance(exc, ModuleNotFoundError):
        why = f"it needs the Python module {exc.name!r}, which the model server does not have"
    elif isinstance(exc, EOFError):
        why = "the file ends too early (a truncated or partial upload)"
    else:  # a KeyError 110 and the like: the bytes are not a pickle at all
        why = "the file is not a model saved with joblib or pickle (another format, or corrupt)"
    detail = f"{type(exc).__name__}: {exc}"
    return f"Could not load the artifact with joblib: {why}. {SAVE_HINT} (Detail: {detail})"


def check_instances(instances) -> list[list[float]]:
    """Return `instances` as rows of numbers, or raise InputError saying what is wrong."""
    if not isinstance(instances, list) or not instances:
        raise InputError("instances must be a non-empty list of rows, e.g. [[5.1, 3.5, 1.4, 0.2]].")
    if len(instances) > MAX_INSTANCES:
        raise InputError(f"At most {MAX_INSTANCES} instances per request.")
    width = None
    for index, row in enumerate(instances):
        if not isinstance(row, list) or not row:
            raise InputError(f"instances[{index}] must be a non-empty list of numbers.")
        if not all(_is_number(value) for value in row):
            raise InputError(f"instances[{index}] must contain only finite numbers.")
        if width is not None and len(row) != width:
            raise InputError(f"instances[{index}] has {len(row)} values; row 0 has {width}.")
        width = len(row)
    return instances


def predict(model, instances) -> list:
    """Predict for `instances` (rows of numbers; an MLflow model also takes records or
    rows with text); return plain JSON-ready predictions."""
    if isinstance(model, MlflowModel):
        rows = check_rows(instances)
        try:
            return to_list(model.predict_rows(rows))
        except MlflowInputError as exc:
            raise InputError(str(exc)) from exc
        except MlflowModelError as exc:
            raise ArtifactError(str(exc)) from exc
    rows = check_instances(instances)
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and len(rows[0]) != expected:
        raise InputError(f"The model expects {expected} features per row, got {len(rows[0])}.")
    import numpy

    try:
        predictions = model.predict(numpy.asarray(rows, dtype=float))
    except Exception as exc:
        raise ArtifactError(f"predict() failed: {exc}") from exc
    return numpy.asarray(predictions).tolist()


def check_rows(instances) -> list:
    """Return `instances` as rows (lists) or records (objects) of plain JSON values, or raise
    InputError: the looser shape an MLflow model with typed columns accepts."""
    if not isinstance(instances, list) or not instances:
        raise InputError("instances must be a non-empty list of rows, e.g. [[5.1, 3.5, 1.4, 0.2]].")
    if len(instances) > MAX_INSTANCES:
        raise InputError(f"At most {MAX_INSTANCES} instances per request.")
    kind = type(instances[0])
    for index, row in enumerate(instances):
        if not isinstance(row, list | dict) or not row or type(row) is not kind:
            raise InputError(
                f"instances[{index}] must be a non-empty list of values (or, for every row, "
                "an object of column names to values)."
            )
        values = row.values() if isinstance(row, dict) else row
        if any(isinstance(value, list | dict) for value in values):
            raise InputError(f"instances[{index}] must hold plain values, not lists or objects.")
    return instances


def to_list(predictions) -> list:
    """Predictions as JSON-ready lists: arrays and series as lists, data frames as records."""
    import numpy

    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return predictions.to_dict(orient="records")
    return numpy.asarray(predictions).tolist()


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
