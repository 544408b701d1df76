"""Small real models: scikit-learn ones trained on data sets that ship with scikit-learn,
and a LightGBM MLflow model trained on synthetic data.

Used by the demo data command and by tests that need a genuine artifact."""

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

SEED = 7


def _split(loader):
    features, target = loader(return_X_y=True)
    return train_test_split(features, target, test_size=0.25, random_state=SEED)


def _classifier_metrics(model, x_test, y_test) -> dict[str, float]:
    predicted = model.predict(x_test)
    return {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
        "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
    }


def _regressor_metrics(model, x_test, y_test) -> dict[str, float]:
    predicted = model.predict(x_test)
    return {
        "r2": round(float(r2_score(y_test, predicted)), 4),
        "rmse": round(float(mean_squared_error(y_test, predicted) ** 0.5), 3),
    }


def train_iris(c: float = 1.0):
    """Logistic regression on iris; returns (artifact bytes, metrics, params, sample rows)."""
    x_train, x_test, y_train, y_test = _split(load_iris)
    model = LogisticRegression(C=c, max_iter=500).fit(x_train, y_train)
    return dump(model), _classifier_metrics(model, x_test, y_test), {"C": c}, x_test[:3].tolist()


def train_wine(n_estimators: int = 50, max_depth: int | None = None):
    x_train, x_test, y_train, y_test = _split(load_wine)
    model = RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, random_state=SEED
    ).fit(x_train, y_train)
    params = {"n_estimators": n_estimators, "max_depth": max_depth}
    return dump(model), _classifier_metrics(model, x_test, y_test), params, x_test[:3].tolist()


def train_diabetes(alpha: float = 1.0):
    x_train, x_test, y_train, y_test = _split(load_diabetes)
    model = Ridge(alpha=alpha).fit(x_train, y_train)
    return (
        dump(model),
        _regressor_metrics(model, x_test, y_test),
        {"alpha": alpha},
        x_test[:3].tolist(),
    )


LIGHTGBM_FEATURES = ["tenure_months", "monthly_spend", "support_tickets", "logins_per_week"]


def churn_data(rows: int = 400, seed: int = SEED):
    """Synthetic churn data: a frame of LIGHTGBM_FEATURES and a 0/1 target, the same for the
    same seed."""
    import numpy
    import pandas

    rng = numpy.random.default_rng(seed)
    frame = pandas.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, rows).astype(float),
            "monthly_spend": rng.normal(60, 20, rows).round(2),
            "support_tickets": rng.poisson(1.5, rows).astype(float),
            "logins_per_week": rng.gamma(2.0, 2.0, rows).round(1),
        }
    )
    risk = 1.5 * frame.support_tickets - 0.05 * frame.tenure_months - 0.3 * frame.logins_per_week
    target = (risk + rng.normal(0, 1, rows) > 0).astype(int)
    return frame, target


def save_lightgbm_model(path: str | Path, num_leaves: int = 7, rounds: int = 20):
    """Train a small LightGBM churn classifier and save it with mlflow.lightgbm.save_model
    (signature and input example included) at the new folder `path`.
    Returns (metrics, params, sample rows)."""
    import lightgbm
    import mlflow.lightgbm
    from mlflow.models import infer_signature
    from sklearn.metrics import roc_auc_score

    frame, target = churn_data()
    x_train, x_test, y_train, y_test = train_test_split(
        frame, target, test_size=0.25, random_state=SEED
    )
    params = {"objective": "binary", "num_leaves": num_leaves, "seed": SEED, "verbose": -1}
    booster = lightgbm.train(params, lightgbm.Dataset(x_train, y_train), num_boost_round=rounds)
    predicted = booster.predict(x_test)
    mlflow.lightgbm.save_model(
        booster,
        str(path),
        signature=infer_signature(x_test, predicted),
        input_example=x_test.head(3),
    )
    metrics = {
        "auc": round(float(roc_auc_score(y_test, predicted)), 4),
        "accuracy": round(float(((predicted > 0.5) == y_test).mean()), 4),
    }
    return metrics, {"num_leaves": num_leaves, "rounds": rounds}, x_test.head(3).values.tolist()


def zip_folder(folder: str | Path) -> bytes:
    """The files of `folder` as a zip archive (names relative to the folder)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            bundle.write(file, file.relative_to(folder).as_posix())
    return buffer.getvalue()


def train_churn_lightgbm(num_leaves: int = 7, rounds: int = 20):
    """The LightGBM MLflow model as a zip archive: (zip bytes, metrics, params, sample)."""
    folder = Path(tempfile.mkdtemp(prefix="lightgbm-"))
    try:
        metrics, params, sample = save_lightgbm_model(folder / "model", num_leaves, rounds)
        return zip_folder(folder / "model"), metrics, params, sample
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def dump(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def artifact_filename(artifact: bytes) -> str:
    """The upload name of a trainer's artifact: a zip is an MLflow model folder."""
    return "model.zip" if artifact.startswith(b"PK\x03\x04") else "model.joblib"


# name, team, tags, description, trainer, one kwargs dict per version
DEMO_MODELS = [
    (
        "iris-classifier",
        "botany",
        ["tabular", "classification"],
        "Classifies iris flowers from four measurements. **Baseline** for the platform demo.",
        train_iris,
        [{"c": 0.05}, {"c": 1.0}, {"c": 10.0}],
    ),
    (
        "wine-cultivar",
        "beverages",
        ["tabular", "classification"],
        "Predicts the cultivar of a wine from 13 chemical measurements.",
        train_wine,
        [{"n_estimators": 5, "max_depth": 2}, {"n_estimators": 100}],
    ),
    (
        "diabetes-progression",
        "health",
        ["tabular", "regression"],
        "Predicts disease progression one year after baseline (regression).",
        train_diabetes,
        [{"alpha": 10.0}, {"alpha": 0.1}],
    ),
    (
        "churn-lightgbm",
        "growth",
        ["tabular", "classification", "mlflow"],
        "Predicts customer churn with LightGBM, saved with `mlflow.lightgbm` (an MLflow "
        "model: signature, input example and pinned requirements). Synthetic data.",
        train_churn_lightgbm,
        [{"num_leaves": 7, "rounds": 20}],
    ),
]
