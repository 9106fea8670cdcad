"""deploy (new endpoint, canary split), predict, undeploy and cleanup through the real SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from core.contract import FEATURES
from tests.commands import flags
from tests.vertex.conftest import BUCKET, LOCATION, PROJECT, run_cli, upload

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def test_deploy_creates_an_endpoint_with_machine_replicas_and_accelerator(
    vertex: Any, capsys: Any
) -> None:
    model = upload(capsys)
    code, result, _ = run_cli(
        capsys,
        "deploy",
        *flags(
            model=model,
            machine_type="n1-standard-8",
            min_replicas=2,
            max_replicas=5,
            accelerator_type="NVIDIA_TESLA_T4",
            service_account="housing-serving@test-project.iam.gserviceaccount.com",
        ),
    )
    assert code == 0
    (create,) = vertex.requests("CreateEndpoint")
    assert create.parent == PARENT and create.endpoint.display_name == "housing"
    (deploy,) = vertex.requests("DeployModel")
    deployed = deploy.deployed_model
    assert deployed.model.startswith(model)
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-standard-8"
    assert resources.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert resources.machine_spec.accelerator_count == 1
    assert (resources.min_replica_count, resources.max_replica_count) == (2, 5)
    assert deployed.service_account.startswith("housing-serving@")
    assert dict(deploy.traffic_split) == {"0": 100}
    assert result["traffic_split"] == {result["deployed_models"][0]: 100}


def test_canary_deploy_to_an_existing_endpoint_splits_traffic(vertex: Any, capsys: Any) -> None:
    stable = upload(capsys)
    _, first, _ = run_cli(capsys, "deploy", "--model", stable)
    canary = upload(capsys, "housing_keras")
    code, second, _ = run_cli(
        capsys, "deploy", *flags(model=canary, endpoint=first["endpoint"], traffic_percentage=10)
    )
    assert code == 0
    old_id = first["deployed_models"][0]
    request = vertex.requests("DeployModel")[1]
    assert dict(request.traffic_split) == {"0": 10, old_id: 90}
    assert len(second["deployed_models"]) == 2
    assert vertex.requests("CreateEndpoint").__len__() == 1


def test_explicit_traffic_split_must_add_up(vertex: Any, capsys: Any) -> None:
    code, _, err = run_cli(
        capsys, "deploy", "--model", "1", "--traffic-split", '{"0": 50, "77": 40}', "--dry-run"
    )
    assert code == 2 and "add up to 100" in err


def write_instances(path: Path, frame: pd.DataFrame) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in frame.to_dict("records")))
    return path


def test_predict_sends_gateway_instances_and_returns_predictions(
    vertex: Any, capsys: Any, split: Any, small_model: Any, tmp_path: Path
) -> None:
    model = upload(capsys)
    _, deployed, _ = run_cli(capsys, "deploy", "--model", model)
    rows = split.test.head(5)[list(FEATURES)].copy()
    rows.loc[rows.index[1], "total_bedrooms"] = float("nan")
    instances = write_instances(
        tmp_path / "instances.jsonl", rows.astype(object).where(rows.notna(), None)
    )
    code, result, _ = run_cli(
        capsys,
        "predict",
        *flags(endpoint=deployed["endpoint"], instances=instances, model_name="housing_sklearn"),
    )
    assert code == 0
    (request,) = vertex.requests("Predict")
    sent = [dict(i) for i in request.instances]
    assert sent[0]["ocean_proximity"] == rows.iloc[0]["ocean_proximity"]
    # The project's image imputes for housing_sklearn (ratios, logs): it gets null.
    assert sent[1]["total_bedrooms"] is None
    assert set(sent[0]) == set(FEATURES)
    expected = small_model.predict(rows)
    assert [r["predicted_median_house_value"] for r in result["rows"]] == [
        float(v) for v in expected
    ]
    assert result["deployed_model_id"] == deployed["deployed_models"][0]


def test_predict_validates_rows_chunks_requests_and_keeps_the_id_column(
    vertex: Any, capsys: Any, split: Any, small_model: Any, tmp_path: Path
) -> None:
    """2,500 rows, three of them corrupt: those are reported by row and id and never sent;
    the rest go in requests of at most 1,000 instances (the serving container's limit)."""
    model = upload(capsys)
    _, deployed, _ = run_cli(capsys, "deploy", "--model", model)
    frame = split.test.head(2500)[list(FEATURES)].astype(object)
    frame.insert(0, "district", [f"d{i:05d}" for i in range(len(frame))])
    frame.iloc[10, frame.columns.get_loc("median_income")] = "lots"
    frame.iloc[1200, frame.columns.get_loc("population")] = -5.0
    frame.iloc[2499, frame.columns.get_loc("ocean_proximity")] = "MOON"
    path = tmp_path / "districts.csv"
    frame.to_csv(path, index=False)
    output = tmp_path / "scored.parquet"

    code, result, err = run_cli(
        capsys,
        "predict",
        *flags(
            endpoint=deployed["endpoint"],
            instances=path,
            model_name="housing_sklearn",
            id_column="district",
            output=output,
        ),
    )

    assert code == 0, err
    requests = vertex.requests("Predict")
    assert [len(r.instances) for r in requests] == [1000, 1000, 497]
    assert result["predicted"] == 2497 and result["rejected"] == 3
    bad = {r["row"]: r for r in result["rows"] if "error" in r}
    assert sorted(bad) == [11, 1201, 2500]
    assert bad[11]["district"] == "d00010" and "median_income: not a number" in bad[11]["error"]
    assert "population: negative count" in bad[1201]["error"]
    assert "ocean_proximity: unknown category" in bad[2500]["error"]
    good = frame.drop(index=frame.index[[10, 1200, 2499]])
    expected = small_model.predict(good[list(FEATURES)].astype({"ocean_proximity": str}))
    scored = pd.read_parquet(output)
    assert scored["district"].tolist() == frame["district"].tolist()
    kept = scored[scored["error"].isna()]
    assert kept["district"].tolist() == good["district"].tolist()
    assert kept["predicted_median_house_value"].tolist() == [float(v) for v in expected]


def test_predict_dry_run_plans_one_request_per_thousand_rows(
    vertex: Any, capsys: Any, split: Any, tmp_path: Path
) -> None:
    path = tmp_path / "many.csv"
    pd.concat([split.train] * 2).head(5000).to_csv(path, index=False)
    code, plan, _ = run_cli(
        capsys,
        "predict",
        *flags(endpoint=9, instances=path, model_name="housing_sklearn", dry_run=True),
    )
    assert code == 0
    chunks = [s["kwargs"]["instances"] for s in plan["steps"] if s["call"] == "Endpoint.predict"]
    assert [c["count"] for c in chunks] == [1000] * 5
    assert vertex.calls == []


def test_predict_reads_csv_and_rejects_missing_columns(
    vertex: Any, capsys: Any, split: Any, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    split.test.head(3)[list(FEATURES[:-1])].to_csv(path, index=False)
    args = ("--endpoint", "1", "--model-name", "housing_sklearn", "--instances")
    code, _, err = run_cli(capsys, "predict", *args, str(path))
    assert code == 2 and "ocean_proximity" in err
    good = tmp_path / "good.csv"
    split.test.head(3).to_csv(good, index=False)
    code, plan, _ = run_cli(capsys, "predict", *args, str(good), "--dry-run")
    assert code == 0 and len(plan["steps"][1]["kwargs"]["instances"]) == 3
    code, _, err = run_cli(capsys, "predict", *args, str(good), "--id-column", "nope")
    assert code == 2 and "no id column 'nope'" in err


def test_undeploy_one_then_cleanup_everything(
    vertex: Any, capsys: Any, storage_client: Any
) -> None:
    model = upload(capsys)
    _, deployed, _ = run_cli(capsys, "deploy", "--model", model)
    endpoint = deployed["endpoint"]
    code, result, _ = run_cli(
        capsys,
        "undeploy",
        *flags(endpoint=endpoint, deployed_model_id=deployed["deployed_models"][0]),
    )
    assert code == 0 and result["deployed_models"] == []
    (undeploy,) = vertex.requests("UndeployModel")
    assert undeploy.deployed_model_id == deployed["deployed_models"][0]

    _, again, _ = run_cli(capsys, "deploy", "--model", model, "--endpoint", endpoint)
    _, job, _ = run_cli(capsys, "train", "--epochs", "2")
    for folder in ("batch/20260101-000000", "jobs/housing-keras-1/model"):
        storage_client.bucket(BUCKET).blob(f"housing/{folder}/x.json").upload_from_string("{}")
    code, result, err = run_cli(
        capsys, "cleanup", *flags(endpoint=endpoint, model=model, custom_job=job["job"], blobs=True)
    )
    assert code == 0, err
    assert len(vertex.requests("UndeployModel")) == 2
    assert [r.name for r in vertex.requests("DeleteEndpoint")] == [endpoint]
    assert [r.name for r in vertex.requests("DeleteModel")] == [model]
    assert [r.name for r in vertex.requests("DeleteCustomJob")] == [job["job"]]
    assert not vertex.endpoints and not vertex.models and not vertex.jobs
    # Job outputs and batch files go; uploaded model versions stay unless named.
    left = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/")}
    assert left and all(name.startswith("housing/models/") for name in left)
    assert sum("blobs under" in d for d in result["deleted"]) == 2

    code, result, _ = run_cli(capsys, "cleanup", "--model-files", "housing_sklearn/1")
    assert code == 0
    left = {b.name for b in storage_client.list_blobs(BUCKET, prefix="housing/")}
    assert not any(name.startswith("housing/models/housing_sklearn/1/") for name in left)


def test_cleanup_model_files_must_name_a_model(vertex: Any, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "cleanup", "--model-files", "../etc", "--dry-run")
    assert code == 2 and "expected MODEL or MODEL/VERSION" in err


def test_cleanup_with_nothing_to_do_is_an_error(vertex: Any, capsys: Any) -> None:
    code, _, err = run_cli(capsys, "cleanup")
    assert code == 2 and "nothing to clean up" in err
