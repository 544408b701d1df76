"""A stand-in training job for the example pipelines: trains a small scikit-learn classifier
on the iris data set and writes what `mlops versions register` needs into --out:
model.joblib, sample_input.json (rows to predict on), metrics.json, params.json."""

import argparse
import json
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="build", help="Folder for the artifact and its files.")
    parser.add_argument("--c", type=float, default=1.0, help="Inverse regularisation strength.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    features, labels = load_iris(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=0.3, random_state=0, stratify=labels
    )
    params = {"C": args.c, "max_iter": 500}
    model = LogisticRegression(**params).fit(train_x, train_y)

    joblib.dump(model, out / "model.joblib")
    (out / "sample_input.json").write_text(json.dumps(test_x[:3].tolist()))
    (out / "metrics.json").write_text(json.dumps({"accuracy": model.score(test_x, test_y)}))
    (out / "params.json").write_text(json.dumps(params))
    print(f"Trained: accuracy {model.score(test_x, test_y):.3f}, files in {out}/")


if __name__ == "__main__":
    main()
