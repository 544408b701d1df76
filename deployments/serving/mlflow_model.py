"""MLflow models: a folder with an `MLmodel` file, loaded with `mlflow.pyfunc`.

`read_facts` reads what the registry shows and stores (flavors, signature, input example,
pinned requirements) without loading the model; `load` loads it for predictions. Both the
validation job and the model server use this module, so "ready" means "the server loads it".
No Django here (the model server imports it).
"""

import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

MLMODEL = "MLmodel"
# Packages installed under another distribution name than the one a model pins.
ALTERNATIVE_DISTRIBUTIONS = {"mlflow": ("mlflow", "mlflow-skinny")}
# MLflow column types that numbers from JSON are cast to before predicting.
NUMERIC_COLUMN_TYPES = {"double": "float64", "float": "float32"}


class MlflowModelError(Exception):
    """The folder is not a usable MLflow model; the message says why."""


class MlflowInputError(MlflowModelError):
    """The input does not match the model's signature; the message is for the caller."""


@dataclass
class Facts:
    """What an MLflow model's files say about it."""

    flavors: list[str]
    signature: dict = field(default_factory=dict)  # {"inputs": [{name, type}], "outputs": …}
    requirements: list[str] = field(default_factory=list)
    input_example: list | None = None  # rows, when the model saved an example
    mlflow_version: str = ""


def find_root(path: str | Path) -> Path | None:
    """The folder holding `MLmodel`: `path` itself or its one subfolder (archives often
    wrap the model in a folder); None when there is none."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / MLMODEL).is_file():
        return path
    children = [child for child in path.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and (children[0] / MLMODEL).is_file():
        return children[0]
    return None


def read_facts(root: str | Path) -> Facts:
    """Read `MLmodel` and the files it names; MlflowModelError when it is not usable."""
    root = Path(root)
    spec = _read_mlmodel(root)
    flavors = spec.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise MlflowModelError("MLmodel lists no flavors, so nothing knows how to load it.")
    if "python_function" not in flavors:
        raise MlflowModelError(
            f"MLmodel has no python_function flavor (only {', '.join(sorted(flavors))}), "
            "so mlflow.pyfunc cannot load it."
        )
    return Facts(
        flavors=sorted(flavors, key=lambda name: (name == "python_function", name)),
        signature=_signature(spec.get("signature")),
        requirements=read_requirements(root, flavors["python_function"] or {}),
        input_example=_input_example(root, spec.get("saved_input_example_info")),
        mlflow_version=str(spec.get("mlflow_version") or ""),
    )


def _read_mlmodel(root: Path) -> dict:
    import yaml

    try:
        text = (root / MLMODEL).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MlflowModelError(f"Cannot read MLmodel: {exc}") from exc
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MlflowModelError(f"MLmodel is not valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise MlflowModelError("MLmodel is not a YAML mapping of flavors and metadata.")
    return spec


def _signature(raw) -> dict:
    """{"inputs": [{"name", "type"}], "outputs": [...]} from MLmodel's JSON strings."""
    if not isinstance(raw, dict):
        return {}
    signature = {}
    for part in ("inputs", "outputs"):
        try:
            specs = json.loads(raw.get(part) or "[]")
        except (TypeError, ValueError):
            raise MlflowModelError(f"MLmodel's signature {part} are not valid JSON.") from None
        if not isinstance(specs, list):
            raise MlflowModelError(f"MLmodel's signature {part} are not a list.")
        signature[part] = [_column(spec, index) for index, spec in enumerate(specs)]
    return signature


def _column(spec, index: int) -> dict:
    if not isinstance(spec, dict):
        raise MlflowModelError(f"MLmodel's signature entry {index} is not an object.")
    if spec.get("type") == "tensor":
        tensor = spec.get("tensor-spec") or {}
        shape = tuple(tensor.get("shape") or ())
        kind = f"tensor {tensor.get('dtype', '?')} {list(shape)}"
    else:
        kind = str(spec.get("type", "?"))
    column = {"name": str(spec.get("name") or ""), "type": kind}
    if spec.get("type") == "tensor":
        column["dtype"] = str((spec.get("tensor-spec") or {}).get("dtype", ""))
        column["shape"] = list((spec.get("tensor-spec") or {}).get("shape") or [])
    return column


def read_requirements(root: Path, pyfunc: dict) -> list[str]:
    """The pinned pip requirements: requirements.txt, else python_env.yaml, else conda.yaml."""
    text = _read_optional(root / "requirements.txt")
    if text is not None:
        return _requirement_lines(text.splitlines())
    env = pyfunc.get("env") if isinstance(pyfunc, dict) else None
    names = env if isinstance(env, dict) else {}
    for yaml_name, reader in (
        (names.get("virtualenv", "python_env.yaml"), _python_env_dependencies),
        (names.get("conda", "conda.yaml"), _conda_pip_dependencies),
    ):
        text = _read_optional(root / str(yaml_name))
        if text is not None:
            return _requirement_lines(reader(_yaml(text)))
    return []


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text() if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _yaml(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _python_env_dependencies(spec) -> list:
    return list(spec.get("dependencies") or []) if isinstance(spec, dict) else []


def _conda_pip_dependencies(spec) -> list:
    if not isinstance(spec, dict):
        return []
    for item in spec.get("dependencies") or []:
        if isinstance(item, dict) and isinstance(item.get("pip"), list):
            return item["pip"]
    return []


def _requirement_lines(lines) -> list[str]:
    """Requirement specifiers, without comments, options (-r, --index-url) or blanks."""
    kept = []
    for line in lines:
        text = str(line).split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            kept.append(text)
    return kept


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements this environment does not satisfy, each with the reason:
    "lightgbm==4.7.0 (not installed)" or "pandas==3.1.1 (installed 2.2.3)". Nothing is
    installed: the portal's own environment is never changed by a model."""
    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            missing.append(f"{line} (not a requirement pip understands)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # for another platform or Python
        installed = _installed_version(requirement.name)
        if installed is None:
            missing.append(f"{line} (not installed)")
        elif requirement.specifier and not requirement.specifier.contains(
            installed, prereleases=True
        ):
            missing.append(f"{line} (installed {installed})")
    return missing


def _installed_version(name: str) -> str | None:
    canonical = name.lower().replace("_", "-")
    for distribution in ALTERNATIVE_DISTRIBUTIONS.get(canonical, (canonical,)):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def _input_example(root: Path, info) -> list | None:
    """The model's saved input example as rows, or None."""
    if not isinstance(info, dict) or not info.get("artifact_path"):
        return None
    path = root / str(info["artifact_path"])
    if not path.resolve().is_relative_to(root.resolve()):
        return None
    try:
        example = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(example, dict):
        example = example.get("data", example.get("inputs"))
    if isinstance(example, list) and example and not isinstance(example[0], list | dict):
        example = [example]  # one row
    return example if isinstance(example, list) and example else None


class MlflowModel:
    """A loaded pyfunc model with the facts of its folder."""

    def __init__(self, pyfunc, facts: Facts):
        self.pyfunc = pyfunc
        self.facts = facts

    @property
    def input_names(self) -> list[str]:
        """The named input columns of the signature, in order ([] for tensor inputs)."""
        names = [column["name"] for column in self.facts.signature.get("inputs", [])]
        return names if names and all(names) else []

    def predict_rows(self, rows: list):
        """Predict for rows of values (or records); named signature columns label rows."""
        import pandas

        if isinstance(rows[0], dict):
            return self.predict(self.typed(pandas.DataFrame.from_records(rows)))
        if self.input_names and len(rows[0]) == len(self.input_names):
            return self.predict(self.typed(pandas.DataFrame(rows, columns=self.input_names)))
        return self.predict(_as_array(rows))

    def typed(self, frame):
        """`frame` with numeric columns cast to the signature's types: JSON has no int/float
        distinction, and mlflow refuses 1 (int64) for a double column."""
        for column in self.facts.signature.get("inputs", []):
            dtype = NUMERIC_COLUMN_TYPES.get(column["type"])
            name = column["name"]
            if dtype and name in frame.columns and frame[name].dtype.kind in "iuf":
                frame[name] = frame[name].astype(dtype)
        return frame

    def predict(self, data):
        from mlflow.exceptions import MlflowException

        try:
            return self.pyfunc.predict(data)
        except MlflowException as exc:  # schema enforcement: the input does not fit
            raise MlflowInputError(exc.message) from exc
        except Exception as exc:  # any flavor's own exception types
            raise MlflowModelError(f"predict() failed: {exc}") from exc


def _as_array(rows):
    import numpy

    return numpy.asarray(rows)


def load(path: str | Path) -> MlflowModel:
    """Load the MLflow model in folder `path` (or its one subfolder) with mlflow.pyfunc."""
    root = find_root(path)
    if root is None:
        raise MlflowModelError(f"No {MLMODEL} file in the artifact: it is not an MLflow model.")
    facts = read_facts(root)
    import mlflow.pyfunc  # imported here: loading it takes a second

    try:
        pyfunc = mlflow.pyfunc.load_model(str(root))
    except Exception as exc:  # a flavor's loader raises anything, ImportError included
        missing = missing_requirements(facts.requirements)
        hint = f" Missing requirements: {', '.join(missing)}." if missing else ""
        raise MlflowModelError(f"mlflow.pyfunc could not load the model: {exc}.{hint}") from exc
    return MlflowModel(pyfunc, facts)
