"""Wrap the project's joblib pipeline as an MLflow model (run with the mlflow venv's python).

<mlflow venv>/bin/python load_tests/peers/mlflow_export.py MODEL.joblib OUT_DIR
"""

from __future__ import annotations

import sys

import joblib
import mlflow.sklearn


def main(argv: list[str]) -> int:
    source, out = argv
    # cloudpickle, as MLflow 2 did: skops refuses the pipeline's custom transformers.
    mlflow.sklearn.save_model(joblib.load(source), out, serialization_format="cloudpickle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
