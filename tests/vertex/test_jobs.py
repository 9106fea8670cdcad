"""train, tune and batch-predict: the job requests the SDK built, and merged batch results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.contract import FEATURES
from tests.commands import flags
from tests.vertex.conftest import BUCKET, LOCATION, PROJECT, run_cli, upload

GPU_TRAINER = "europe-docker.pkg.dev/test-project/housing/trainer-gpu:1"


def test_train_submits_a_custom_job_running_the_trainer_image(vertex: Any, capsys: Any) -> None:
    code, result, _ = run_cli(capsys, "train", "--epochs", "30", "--wait")
    assert code == 0
    (request,) = vertex.requests("CreateCustomJob")
    (pool,) = request.custom_job.job_spec.worker_pool_specs
    assert pool.container_spec.image_uri.endswith("/housing/trainer:1")
    assert not pool.machine_spec.accelerator_type
    assert result["state"] == "JOB_STATE_SUCCEEDED"


def test_gpu_training_runs_the_cuda_trainer_image(vertex: Any, capsys: Any) -> None:
    code, result, _ = run_cli(
        capsys,
        "train",
        *flags(
            epochs=30,
            arch="wide_deep",
            accelerator_type="NVIDIA_TESLA_T4",
            trainer_image_gpu=GPU_TRAINER,
            wait=True,
        ),
    )
    assert code == 0
    (request,) = vertex.requests("CreateCustomJob")
    assert request.parent == f"projects/{PROJECT}/locations/{LOCATION}"
    job = request.custom_job
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.container_spec.image_uri == GPU_TRAINER
    assert list(pool.container_spec.command) == ["python", "-m", "deploy.vertex.trainer"]
    assert list(pool.container_spec.args) == ["--epochs=30", "--arch=wide_deep"]
    assert pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert job.job_spec.base_output_directory.output_uri_prefix.startswith(
        f"gs://{BUCKET}/housing/jobs/housing-keras-"
    )
    assert result["state"] == "JOB_STATE_SUCCEEDED"
    assert vertex.requests("GetCustomJob")


def test_gpu_training_without_the_cuda_image_is_a_one_line_error(vertex: Any, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "train", "--accelerator-type", "NVIDIA_L4", "--dry-run")
    assert code == 2 and "HOUSING_VERTEX_TRAINER_IMAGE_GPU" in err
    assert len(err.strip().splitlines()) == 1


def test_replica_count_makes_a_chief_and_a_worker_pool(vertex: Any, capsys: Any) -> None:
    code, _, _ = run_cli(capsys, "train", "--replica-count", "3", "--epochs", "4")
    assert code == 0
    (request,) = vertex.requests("CreateCustomJob")
    chief, workers = request.custom_job.job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 2)
    assert chief.container_spec == workers.container_spec
    assert list(chief.container_spec.args) == ["--epochs=4"]


def test_tune_defaults_are_modest(vertex: Any, capsys: Any) -> None:
    code, plan, _ = run_cli(capsys, "tune", "--dry-run")
    assert code == 0
    tuning = plan["steps"][1]["kwargs"]
    assert (tuning["max_trial_count"], tuning["parallel_trial_count"]) == (12, 3)


def test_tune_builds_the_books_search_space(vertex: Any, capsys: Any) -> None:
    code, result, _ = run_cli(
        capsys, "tune", "--max-trials", "8", "--parallel-trials", "2", "--epochs", "5", "--wait"
    )
    assert code == 0
    (request,) = vertex.requests("CreateHyperparameterTuningJob")
    job = request.hyperparameter_tuning_job
    assert (job.max_trial_count, job.parallel_trial_count) == (8, 2)
    (metric,) = job.study_spec.metrics
    assert metric.metric_id == "val_rmse" and metric.goal.name == "MINIMIZE"
    params = {p.parameter_id: p for p in job.study_spec.parameters}
    assert set(params) == {"learning_rate", "n_neurons", "n_hidden", "optimizer"}
    assert params["learning_rate"].double_value_spec.min_value == 1e-3
    assert params["learning_rate"].scale_type.name == "UNIT_LOG_SCALE"
    assert params["n_neurons"].integer_value_spec.max_value == 300
    assert list(params["optimizer"].categorical_value_spec.values) == ["sgd", "adam"]
    (pool,) = job.trial_job_spec.worker_pool_specs
    assert list(pool.container_spec.args) == ["--epochs=5"]
    assert result["best_trial"]["id"] == "2" and result["best_trial"]["val_rmse"] == 48500.5


def test_tune_without_wait_creates_the_job_and_returns(vertex: Any, capsys: Any) -> None:
    code, result, err = run_cli(
        capsys,
        "tune",
        *flags(max_trials=2, service_account="trainer@test-project.iam.gserviceaccount.com"),
    )
    assert code == 0, err
    (request,) = vertex.requests("CreateHyperparameterTuningJob")
    job = request.hyperparameter_tuning_job
    assert job.trial_job_spec.service_account == "trainer@test-project.iam.gserviceaccount.com"
    assert job.parallel_trial_count == 2  # never more parallel trials than trials
    assert vertex.requests("GetHyperparameterTuningJob") == []
    assert result["state"] == "JOB_STATE_PENDING"


def test_train_without_trainer_image_is_a_one_line_error(
    vertex: Any, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("HOUSING_VERTEX_TRAINER_IMAGE")
    code, _, err = run_cli(capsys, "train", "--dry-run")
    assert code == 2 and "HOUSING_VERTEX_TRAINER_IMAGE" in err


def test_batch_predict_uploads_jsonl_runs_the_job_and_merges_in_input_order(
    vertex: Any, capsys: Any, storage_client: Any, split: Any, small_model: Any, tmp_path: Path
) -> None:
    model = upload(capsys)
    rows = split.test.head(40).reset_index(drop=True)
    rows.insert(0, "house_id", range(100, 140))
    source = tmp_path / "houses.parquet"
    rows.to_parquet(source)
    output = tmp_path / "scored.csv"
    code, result, _ = run_cli(
        capsys,
        "batch-predict",
        *flags(
            model=model,
            input=source,
            output=output,
            model_name="housing_sklearn",
            machine_type="n1-highmem-2",
            max_replicas=3,
        ),
    )
    assert code == 0
    (request,) = vertex.requests("CreateBatchPredictionJob")
    job = request.batch_prediction_job
    assert job.model.startswith(model)
    assert job.input_config.instances_format == "jsonl"
    (uri,) = job.input_config.gcs_source.uris
    assert uri.startswith(f"gs://{BUCKET}/housing/batch/") and uri.endswith("instances.jsonl")
    assert job.dedicated_resources.machine_spec.machine_type == "n1-highmem-2"
    assert job.dedicated_resources.max_replica_count == 3
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    first = storage_client.bucket(bucket).blob(name).download_as_text().splitlines()[0]
    assert set(json.loads(first)) == set(FEATURES)

    scored = pd.read_csv(output)
    assert list(scored["house_id"]) == list(range(100, 140))
    expected = small_model.predict(rows[list(FEATURES)])
    assert scored["predicted_median_house_value"].to_numpy() == pytest.approx(expected)
    assert result["rows"] == 40 and result["missing"] == 0


def test_batch_predict_validates_rows_and_reads_csv(
    vertex: Any, capsys: Any, split: Any, small_model: Any, tmp_path: Path
) -> None:
    """A corrupt row is reported in the output, never sent; ids and order are kept."""
    model = upload(capsys)
    rows = split.test.head(12).reset_index(drop=True).astype({"median_income": object})
    rows.insert(0, "house_id", [f"h{i}" for i in range(12)])
    rows.loc[4, "median_income"] = "lots"
    rows.loc[7, "total_bedrooms"] = float("nan")  # allowed: imputed by the model
    source = tmp_path / "houses.csv"
    rows.to_csv(source, index=False)
    output = tmp_path / "scored.parquet"
    code, result, err = run_cli(
        capsys,
        "batch-predict",
        *flags(model=model, input=source, output=output, model_name="housing_sklearn"),
    )
    assert code == 0, err
    assert (result["rows"], result["predicted"], result["rejected"]) == (12, 11, 1)
    scored = pd.read_parquet(output)
    assert scored["house_id"].tolist() == rows["house_id"].tolist()
    assert "median_income: not a number" in scored.loc[4, "error"]
    assert pd.isna(scored.loc[4, "predicted_median_house_value"])
    good = rows.drop(index=4)
    expected = small_model.predict(good[list(FEATURES)].astype({"median_income": float}))
    assert scored.drop(index=4)["predicted_median_house_value"].to_numpy() == pytest.approx(
        expected
    )


def test_batch_predict_from_bigquery_is_planned(vertex: Any, capsys: Any) -> None:
    code, plan, _ = run_cli(
        capsys,
        "batch-predict",
        *flags(model=42, bigquery_source="bq://test-project.housing.districts", dry_run=True),
    )
    assert code == 0
    job = plan["steps"][-1]["kwargs"]
    assert plan["steps"][-1]["call"] == "Model.batch_predict"
    assert job["bigquery_source"] == "bq://test-project.housing.districts"
    assert job["bigquery_destination_prefix"] == f"bq://{PROJECT}"
    assert (job["instances_format"], job["predictions_format"]) == ("bigquery", "bigquery")
    assert "gcs_source" not in job and vertex.calls == []


def test_batch_predict_rejects_other_output_formats(
    vertex: Any, capsys: Any, tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys,
        "batch-predict",
        *flags(model=1, input="x.csv", output=tmp_path / "out.json", dry_run=True),
    )
    assert code == 2 and ".csv or .parquet" in err
