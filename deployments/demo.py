"""Small real scikit-learn models trained on data sets that ship with scikit-learn.

Used by the demo data command and by tests that need a genuine artifact."""

import io

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


def dump(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


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
]
