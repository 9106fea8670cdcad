"""The Vertex AI operations, each split into ``plan_*`` (pure) and ``run_*`` (does it).

A plan is JSON: the operation, where it runs, and the ordered steps, each the SDK call and
its exact keyword arguments. ``run_*`` executes the steps of that same plan, so a dry run
shows precisely what a real run calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.contract import KERAS_MODEL, NULLABLE_FEATURES, SKLEARN_MODEL
from core.errors import UserError
from deploy.vertex import gcs
from deploy.vertex.cloud import Cloud, cloud_errors
from deploy.vertex.instances import (
    instance_key,
    json_value,
    missing_value_encoding,
    prediction_value,
    read_table,
    to_instances,
)
from deploy.vertex.settings import VertexSettings
from training.repository import ModelRepository, RepositoryError

PREDICTION_COLUMN = "predicted_median_house_value"
ERROR_COLUMN = "error"
GATEWAY_PORT = 8000
TRAINER_MODULE = "deploy.vertex.trainer"
HP_METRIC = "val_rmse"


@dataclass
class Plan:
    operation: str
    project: str
    location: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    version: int | None = None
    """The local model version an upload copies (printed by both a dry run and a run)."""

    def add(self, call: str, **kwargs: Any) -> dict[str, Any]:
        self.steps.append({"call": call, "kwargs": kwargs})
        return kwargs

    def step(self, call: str) -> dict[str, Any]:
        return next(s["kwargs"] for s in self.steps if s["call"] == call)

    def has(self, call: str) -> bool:
        return any(s["call"] == call for s in self.steps)

    def call_first(self, target: Any, *calls: str) -> Any:
        """Call on ``target`` the method of the first of ``calls`` (``Class.method``) that the
        plan has, with that step's arguments: the plan chose it, the run only follows."""
        call = next(c for c in calls if self.has(c))
        return getattr(target, call.rsplit(".", 1)[1])(**self.step(call))

    def to_json(self) -> dict[str, Any]:
        """The plan as printed by ``--dry-run``: long instance lists shown as a count and
        their first rows."""
        version = {} if self.version is None else {"version": self.version}
        steps = []
        for step in self.steps:
            kwargs = dict(step["kwargs"])
            if isinstance(kwargs.get("instances"), list) and len(kwargs["instances"]) > 3:
                kwargs["instances"] = {
                    "count": len(kwargs["instances"]),
                    "first": kwargs["instances"][:3],
                }
            steps.append({"call": step["call"], "kwargs": kwargs})
        return {
            "operation": self.operation,
            "project": self.project,
            "location": self.location,
            **version,
            "steps": steps,
        }


def new_plan(settings: VertexSettings, operation: str, *, bucket: bool = False) -> Plan:
    if not settings.project:
        raise UserError("no project: pass --project or set HOUSING_VERTEX_PROJECT")
    if bucket and not settings.bucket:
        raise UserError("no bucket: pass --bucket or set HOUSING_VERTEX_BUCKET")
    return Plan(operation, settings.project, settings.location)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def machine_kwargs(settings: VertexSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"machine_type": settings.machine_type}
    if settings.accelerator_type:
        kwargs["accelerator_type"] = settings.accelerator_type
        kwargs["accelerator_count"] = settings.accelerators
    return kwargs


# ---- bucket ---------------------------------------------------------------------------


def plan_bucket(settings: VertexSettings) -> Plan:
    plan = new_plan(settings, "bucket", bucket=True)
    plan.add(
        "storage.Client.create_bucket",
        bucket_or_name=settings.bucket,
        location=settings.location,
        if_exists="reuse",
    )
    return plan


def run_bucket(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    kwargs = plan.step("storage.Client.create_bucket")
    with cloud_errors(f"bucket gs://{kwargs['bucket_or_name']}"):
        created = gcs.ensure_bucket(cloud.storage, kwargs["bucket_or_name"], kwargs["location"])
    return {"bucket": f"gs://{kwargs['bucket_or_name']}", "created": created}


# ---- upload ---------------------------------------------------------------------------


def resolve_version(
    settings: VertexSettings, model: str, version: int | None, label: str | None
) -> tuple[int, Path, dict[str, Any], dict[str, int]]:
    """(version, its folder, its manifest, the model's labels); by default the version
    ``ModelRepository.default_version`` names: ``stable``, else the highest served."""
    repo = ModelRepository(settings.models_dir)
    try:
        labels = repo.labels(model)
    except RepositoryError:
        raise UserError(f"{model} is not in {repo.config_path}") from None
    if label is not None:
        if label not in labels:
            raise UserError(f"{model} has no label {label!r} (labels: {sorted(labels)})")
        version = labels[label]
    if version is None:
        version = repo.default_version(model)
        if version is None:
            raise UserError(f"{model} has no version in {repo.root}")
    if version not in repo.versions(model):
        raise UserError(f"{model} has no version {version} in {repo.root}")
    try:
        manifest = repo.manifest(model, version)
    except (OSError, ValueError, RepositoryError) as exc:
        raise UserError(f"{model} v{version}: unreadable manifest ({exc})") from None
    return version, repo.version_dir(model, version), manifest, labels


# Vertex starts routing once the container answers this; the project's image needs ≈ 20 s
# (download, load, warm-up) and Vertex gives up after a few failed probes.
STARTUP_PROBE = [
    "python",
    "-c",
    "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % "
    "os.environ.get('AIP_HTTP_PORT', '8000'), timeout=5)",
]


def serving_container(settings: VertexSettings, model: str, platform: Any) -> dict[str, Any]:
    """The container ``model`` runs in on Vertex: the project's serving image unless
    ``keras_serving_image`` names another one for ``housing_keras``."""
    if model == KERAS_MODEL or platform == "tensorflow":
        if settings.keras_serving_image:
            return {"serving_container_image_uri": settings.keras_serving_image}
    elif not (model == SKLEARN_MODEL or platform == "sklearn"):
        raise UserError(f"{model}: unknown platform {platform!r}")
    if not settings.serving_image:
        raise UserError(
            f"{model} runs on the project's serving image (the TensorFlow that exported it; "
            "Google's prebuilt scikit-learn container cannot unpickle the custom transformers): "
            "pass --serving-image or set HOUSING_VERTEX_SERVING_IMAGE"
        )
    return {
        "serving_container_image_uri": settings.serving_image,
        "serving_container_predict_route": f"/v1/models/{model}:predict",
        "serving_container_health_route": "/readyz",
        "serving_container_ports": [GATEWAY_PORT],
        "serving_container_startup_probe_exec": STARTUP_PROBE,
        "serving_container_startup_probe_period_seconds": 10,
        "serving_container_startup_probe_timeout_seconds": 8,
        # The gateway binds 0.0.0.0 in the container; Vertex AI authenticates callers at
        # its endpoint (IAM), so the gateway's own API keys are explicitly waived.
        "serving_container_environment_variables": {"HOUSING_ALLOW_UNAUTHENTICATED": "true"},
    }


def plan_upload(
    settings: VertexSettings, model: str, version: int | None = None, label: str | None = None
) -> Plan:
    """One registry Model per model name: the first upload creates it, later ones add a
    version to it (``parent_model``); our labels on the version become Vertex aliases."""
    plan = new_plan(settings, "upload", bucket=True)
    version, folder, manifest, labels = resolve_version(settings, model, version, label)
    plan.version = version
    destination = f"{settings.gcs_root()}/models/{model}/{version}"
    files = gcs.local_files(folder)
    plan.add(
        "storage.upload_folder",
        source=str(folder),
        destination=destination,
        files=[p.relative_to(folder).as_posix() for p in files],
    )
    plan.add("aiplatform.Model.list", filter=f'display_name="{model}"', order_by="create_time")
    aliases = sorted(name for name, number in labels.items() if number == version)
    plan.add(
        "aiplatform.Model.upload",
        display_name=model,
        artifact_uri=destination,
        description=f"{model} ({manifest.get('framework', '?')})",
        version_description=f"{model} version {version}",
        version_aliases=aliases,
        is_default_version=version == ModelRepository(settings.models_dir).default_version(model),
        labels={"model": model, "version": str(version)},
        parent_model=None,  # run: the Model that Model.list found, if any
        **serving_container(settings, model, manifest.get("platform")),
    )
    return plan


def run_upload(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    copy = plan.step("storage.upload_folder")
    with cloud_errors(f"copy to {copy['destination']}"):
        uploaded = gcs.upload_folder(cloud.storage, Path(copy["source"]), copy["destination"])
    upload = dict(plan.step("aiplatform.Model.upload"))
    with cloud_errors("Model.upload"):
        existing = aiplatform.Model.list(**plan.step("aiplatform.Model.list"))
        if existing:
            upload["parent_model"] = existing[0].resource_name
        else:
            upload["is_default_version"] = True  # a registry Model's first version is its default
        model = aiplatform.Model.upload(**upload)
    return {
        "model": model.resource_name,
        "version": plan.version,
        "vertex_version_id": model.version_id,
        "version_aliases": list(upload["version_aliases"]),
        "new_registry_model": not existing,
        "artifact_uri": copy["destination"],
        "files": len(uploaded),
    }


# ---- deploy / undeploy ----------------------------------------------------------------


def plan_deploy(
    settings: VertexSettings,
    model: str,
    endpoint: str | None,
    endpoint_name: str,
    traffic_percentage: int,
    traffic_split: dict[str, int] | None,
) -> Plan:
    plan = new_plan(settings, "deploy")
    if endpoint:
        plan.add("aiplatform.Endpoint", endpoint_name=endpoint)
    else:
        plan.add(
            "aiplatform.Endpoint.create", display_name=endpoint_name, labels={"service": "housing"}
        )
    plan.add("aiplatform.Model", model_name=model)
    deploy: dict[str, Any] = {
        "deployed_model_display_name": f"{endpoint_name}-model",
        **machine_kwargs(settings),
        "min_replica_count": settings.min_replicas,
        "max_replica_count": max(settings.max_replicas, settings.min_replicas),
        "sync": True,
    }
    if traffic_split:
        deploy["traffic_split"] = traffic_split
    else:
        deploy["traffic_percentage"] = traffic_percentage
    if settings.service_account:
        deploy["service_account"] = settings.service_account
    plan.add("Model.deploy", **deploy)
    return plan


def run_deploy(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    with cloud_errors("deploy"):
        if plan.has("aiplatform.Endpoint.create"):
            endpoint = aiplatform.Endpoint.create(**plan.step("aiplatform.Endpoint.create"))
        else:
            endpoint = aiplatform.Endpoint(**plan.step("aiplatform.Endpoint"))
        model = aiplatform.Model(**plan.step("aiplatform.Model"))
        model.deploy(endpoint=endpoint, **plan.step("Model.deploy"))
        endpoint._sync_gca_resource()
    return {
        "endpoint": endpoint.resource_name,
        "deployed_models": [d.id for d in endpoint.gca_resource.deployed_models],
        "traffic_split": dict(endpoint.gca_resource.traffic_split),
    }


def plan_undeploy(settings: VertexSettings, endpoint: str, deployed_model_id: str | None) -> Plan:
    plan = new_plan(settings, "undeploy")
    plan.add("aiplatform.Endpoint", endpoint_name=endpoint)
    if deployed_model_id:
        plan.add("Endpoint.undeploy", deployed_model_id=deployed_model_id, sync=True)
    else:
        plan.add("Endpoint.undeploy_all", sync=True)
    return plan


def run_undeploy(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    with cloud_errors("undeploy"):
        endpoint = aiplatform.Endpoint(**plan.step("aiplatform.Endpoint"))
        plan.call_first(endpoint, "Endpoint.undeploy", "Endpoint.undeploy_all")
        endpoint._sync_gca_resource()
    return {
        "endpoint": endpoint.resource_name,
        "deployed_models": [d.id for d in endpoint.gca_resource.deployed_models],
    }


# ---- predict --------------------------------------------------------------------------


def instance_limit() -> int:
    """Instances per request the serving container accepts (the gateway's ``max_instances``)."""
    from service.gateway.settings import GatewaySettings

    return int(GatewaySettings.model_fields["max_instances"].default)


def checked_rows(
    settings: VertexSettings, model: str, version: int | None, frame: pd.DataFrame
) -> tuple[list[int], dict[str, str], list[dict[str, Any]]]:
    """(valid row positions, rejected position -> reason, instances of the valid rows); the
    positions of rejected rows are strings, as the plan (JSON) keeps them.

    Rows are validated like batch scoring does; missing values are encoded for the model's
    container from the local version the endpoint serves (default: the stable one)."""
    from pipelines.batch.validate import validate

    checked = validate(frame.reset_index(drop=True))
    valid = [int(i) for i in checked.valid.nonzero()[0]]
    rejected = {str(i): "; ".join(reasons) for i, reasons in sorted(checked.reasons.items())}
    rows = frame.iloc[valid]
    fill: dict[str, float] = {}
    if rows[list(NULLABLE_FEATURES)].isna().any().any():
        _, folder, manifest, _ = resolve_version(settings, model, version, None)
        fill = missing_value_encoding(folder, str(manifest.get("platform")))
    return valid, rejected, to_instances(rows, fill)


def plan_predict(
    settings: VertexSettings,
    endpoint: str,
    instances_file: Path,
    model: str,
    version: int | None = None,
    id_column: str | None = None,
    output: Path | None = None,
) -> Plan:
    plan = new_plan(settings, "predict")
    frame = read_table(instances_file)
    if id_column is not None and id_column not in frame.columns:
        raise UserError(f"{instances_file}: no id column {id_column!r}")
    if output is not None and output.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"{output}: output must be .csv or .parquet")
    valid, rejected, instances = checked_rows(settings, model, version, frame)
    plan.add("aiplatform.Endpoint", endpoint_name=endpoint)
    limit = instance_limit()
    for start in range(0, len(instances), limit):
        plan.add("Endpoint.predict", instances=instances[start : start + limit])
    plan.add(
        "output.rows",
        source=str(instances_file),
        rows=len(frame),
        valid=valid,
        rejected=rejected,
        id_column=id_column,
        output=None if output is None else str(output),
    )
    return plan


def run_predict(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    predictions: list[float] = []
    with cloud_errors("predict"):
        endpoint = aiplatform.Endpoint(**plan.step("aiplatform.Endpoint"))
        for step in plan.steps:
            if step["call"] == "Endpoint.predict":
                response = endpoint.predict(**step["kwargs"])
                predictions += [prediction_value(p) for p in response.predictions]
    out = plan.step("output.rows")
    frame = with_predictions(out["source"], out["valid"], predictions, out["rejected"])
    rows = []
    pairs = zip(frame[PREDICTION_COLUMN], frame[ERROR_COLUMN], strict=True)
    for i, (value, error) in enumerate(pairs):
        result: dict[str, Any] = {"row": i + 1}
        if out["id_column"]:
            result[out["id_column"]] = json_value(frame[out["id_column"]].iat[i])
        failed = isinstance(error, str)
        result.update({ERROR_COLUMN: error} if failed else {PREDICTION_COLUMN: float(value)})
        rows.append(result)
    if out["output"]:
        write_frame(frame, Path(out["output"]))
    return {
        "rows": rows,
        "predicted": len(predictions),
        "rejected": len(out["rejected"]),
        "requests": sum(s["call"] == "Endpoint.predict" for s in plan.steps),
        "deployed_model_id": response.deployed_model_id if predictions else None,
        "output": out["output"],
    }


def with_predictions(
    source: str, valid: list[int], predictions: list[float], rejected: dict[str, str]
) -> pd.DataFrame:
    """The input file's rows (every column, in order) with the prediction of each valid row
    and the reason each rejected row was not sent."""
    frame = read_table(Path(source)).reset_index(drop=True)
    values = np.full(len(frame), np.nan)
    values[valid] = predictions
    reasons: list[str | None] = [None] * len(frame)
    for row, reason in rejected.items():
        reasons[int(row)] = reason
    frame[PREDICTION_COLUMN] = values
    frame[ERROR_COLUMN] = reasons
    return frame


def write_frame(frame: pd.DataFrame, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        frame.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)


# ---- batch-predict --------------------------------------------------------------------


def plan_batch_predict(
    settings: VertexSettings,
    model: str,
    input_file: Path | None,
    output_file: Path | None,
    model_name: str | None = None,
    version: int | None = None,
    bigquery_source: str | None = None,
    bigquery_destination: str | None = None,
) -> Plan:
    """A local CSV/Parquet/JSON(L) file: rows validated like batch scoring, valid ones
    uploaded as JSONL (missing values encoded for the model's container), results merged
    back into the file's rows (id and every other column kept). Or a BigQuery table read
    and written by Vertex itself (``bq://project.dataset.table``)."""
    plan = new_plan(settings, "batch-predict", bucket=True)
    folder = f"{settings.gcs_root()}/batch/{stamp()}"
    job: dict[str, Any] = {"job_display_name": f"housing-batch-{stamp()}"}
    if bigquery_source is not None:
        if input_file is not None or not bigquery_source.startswith("bq://"):
            raise UserError("--bigquery-source takes bq://PROJECT.DATASET.TABLE, without --input")
        destination = bigquery_destination or f"bq://{settings.project}"
        job |= {
            "bigquery_source": bigquery_source,
            "bigquery_destination_prefix": destination,
            "instances_format": "bigquery",
            "predictions_format": "bigquery",
        }
    else:
        if input_file is None or output_file is None:
            raise UserError("give --input and --output (or --bigquery-source)")
        if output_file.suffix.lower() not in (".csv", ".parquet"):
            raise UserError(f"{output_file}: output must be .csv or .parquet")
        if model_name is None:
            raise UserError("--model-name: which model the Vertex model is (missing values)")
        frame = read_table(input_file)
        valid, rejected, instances = checked_rows(settings, model_name, version, frame)
        if not instances:
            raise UserError(f"{input_file}: no valid row to predict ({len(rejected)} rejected)")
        source = f"{folder}/instances.jsonl"
        plan.add("storage.upload_jsonl", destination=source, instances=instances, content="jsonl")
        job |= {
            "gcs_source": source,
            "gcs_destination_prefix": f"{folder}/output",
            "instances_format": "jsonl",
            "predictions_format": "jsonl",
        }
    plan.add("aiplatform.Model", model_name=model)
    job |= {
        **machine_kwargs(settings),
        "starting_replica_count": settings.min_replicas,
        "max_replica_count": max(settings.max_replicas, settings.min_replicas),
        "sync": True,
    }
    if settings.service_account:
        job["service_account"] = settings.service_account
    plan.add("Model.batch_predict", **job)
    if bigquery_source is None:
        assert input_file is not None and output_file is not None
        plan.add(
            "output.merge_results",
            source=str(input_file),
            output=str(output_file),
            valid=valid,
            rejected=rejected,
        )
    return plan


def run_batch_predict(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    if plan.has("storage.upload_jsonl"):
        upload = plan.step("storage.upload_jsonl")
        with cloud_errors(f"write {upload['destination']}"):
            gcs.upload_text(
                cloud.storage,
                "".join(json.dumps(i) + "\n" for i in upload["instances"]),
                upload["destination"],
                "application/jsonl",
            )
    with cloud_errors("batch prediction"):
        model = aiplatform.Model(**plan.step("aiplatform.Model"))
        job = model.batch_predict(**plan.step("Model.batch_predict"))
    state = job.state.name
    if state != "JOB_STATE_SUCCEEDED":
        raise UserError(f"batch prediction job {job.resource_name} ended in {state}")
    if job.output_info is None:
        raise UserError(f"batch prediction job {job.resource_name} reported no output")
    if not plan.has("output.merge_results"):
        return {"job": job.resource_name, "output_table": job.output_info.bigquery_output_table}
    output_dir = job.output_info.gcs_output_directory
    results: dict[str, float] = {}
    errors = 0
    with cloud_errors(f"read {output_dir}"):
        for uri in gcs.list_uris(cloud.storage, output_dir):
            name = uri.rsplit("/", 1)[-1]
            if not name.startswith(("prediction.results", "prediction.errors")):
                continue
            for line in gcs.read_text(cloud.storage, uri).splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                if "prediction" not in record:
                    errors += 1
                    continue
                results[instance_key(record["instance"])] = prediction_value(record["prediction"])
    merge = plan.step("output.merge_results")
    sent = plan.step("storage.upload_jsonl")["instances"]
    found = [results.get(instance_key(i)) for i in sent]
    frame = with_predictions(
        merge["source"],
        merge["valid"],
        [float("nan") if v is None else v for v in found],
        merge["rejected"],
    )
    write_frame(frame, Path(merge["output"]))
    missing = sum(v is None for v in found)
    return {
        "job": job.resource_name,
        "output_directory": output_dir,
        "rows": len(frame),
        "predicted": len(found) - missing,
        "rejected": len(merge["rejected"]),
        "missing": missing,
        "errors": errors,
        "output": merge["output"],
    }


# ---- train / tune ---------------------------------------------------------------------


def trainer_image(settings: VertexSettings) -> str:
    """The CUDA build when an accelerator is requested: the CPU image's TensorFlow would
    leave the paid-for GPUs idle."""
    if settings.accelerator_type:
        if not settings.trainer_image_gpu:
            raise UserError(
                f"--accelerator-type {settings.accelerator_type} needs the GPU trainer image "
                "(docker build --build-arg EXTRAS='[gpu]' -f docker/trainer.Dockerfile .): "
                "pass --trainer-image-gpu or set HOUSING_VERTEX_TRAINER_IMAGE_GPU"
            )
        return settings.trainer_image_gpu
    if not settings.trainer_image:
        raise UserError(
            "no trainer image: pass --trainer-image or set HOUSING_VERTEX_TRAINER_IMAGE"
        )
    return settings.trainer_image


def worker_pool_specs(
    settings: VertexSettings, trainer_args: list[str], replicas: int = 1
) -> list[dict[str, Any]]:
    """Pool 0 is the chief; with ``replicas`` > 1 a second pool holds the other workers.
    Vertex then sets ``TF_CONFIG`` (chief + workers) and the trainer runs under
    MultiWorkerMirroredStrategy, the chief alone exporting the model."""
    machine: dict[str, Any] = {"machine_type": settings.machine_type}
    if settings.accelerator_type:
        machine["accelerator_type"] = settings.accelerator_type
        machine["accelerator_count"] = settings.accelerators
    pool = {
        "machine_spec": machine,
        "container_spec": {
            "image_uri": trainer_image(settings),
            "command": ["python", "-m", TRAINER_MODULE],
            "args": trainer_args,
        },
    }
    pools = [{**pool, "replica_count": 1}]
    if replicas > 1:
        pools.append({**pool, "replica_count": replicas - 1})
    return pools


def custom_job_kwargs(
    settings: VertexSettings, name: str, trainer_args: list[str], replicas: int = 1
) -> dict:
    return {
        "display_name": name,
        "worker_pool_specs": worker_pool_specs(settings, trainer_args, replicas),
        "base_output_dir": f"{settings.gcs_root()}/jobs/{name}",
        "staging_bucket": f"gs://{settings.bucket}",
        "labels": {"service": "housing"},
    }


def run_kwargs(settings: VertexSettings, wait: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"sync": wait} if wait else {}
    if settings.service_account:
        kwargs["service_account"] = settings.service_account
    return kwargs


def plan_train(
    settings: VertexSettings, trainer_args: list[str], wait: bool, replicas: int = 1
) -> Plan:
    plan = new_plan(settings, "train", bucket=True)
    plan.add(
        "aiplatform.CustomJob",
        **custom_job_kwargs(settings, f"housing-keras-{stamp()}", trainer_args, replicas),
    )
    plan.add("CustomJob.run" if wait else "CustomJob.submit", **run_kwargs(settings, wait))
    return plan


def run_train(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    with cloud_errors("training job"):
        job = aiplatform.CustomJob(**plan.step("aiplatform.CustomJob"))
        plan.call_first(job, "CustomJob.run", "CustomJob.submit")
    return {
        "job": job.resource_name,
        "state": job.state.name,
        "model_dir": f"{plan.step('aiplatform.CustomJob')['base_output_dir']}/model",
    }


# The book's search space (chapter 19), reported metric: validation RMSE, minimised.
BOOK_PARAMETER_SPECS: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "double", "min": 1e-3, "max": 10.0, "scale": "log"},
    "n_neurons": {"type": "integer", "min": 1, "max": 300, "scale": "linear"},
    "n_hidden": {"type": "integer", "min": 1, "max": 10, "scale": "linear"},
    "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
}


def parameter_spec(specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON search space as ``aiplatform.hyperparameter_tuning`` objects."""
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    built: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec["type"] == "double":
            built[name] = hpt.DoubleParameterSpec(
                min=spec["min"], max=spec["max"], scale=spec["scale"]
            )
        elif spec["type"] == "integer":
            built[name] = hpt.IntegerParameterSpec(
                min=spec["min"], max=spec["max"], scale=spec["scale"]
            )
        else:
            built[name] = hpt.CategoricalParameterSpec(values=spec["values"])
    return built


def plan_tune(
    settings: VertexSettings,
    trainer_args: list[str],
    max_trials: int,
    parallel_trials: int,
    wait: bool,
) -> Plan:
    plan = new_plan(settings, "tune", bucket=True)
    name = f"housing-keras-hp-{stamp()}"
    plan.add("aiplatform.CustomJob", **custom_job_kwargs(settings, name, trainer_args))
    plan.add(
        "aiplatform.HyperparameterTuningJob",
        display_name=name,
        metric_spec={HP_METRIC: "minimize"},
        parameter_spec=BOOK_PARAMETER_SPECS,
        max_trial_count=max_trials,
        parallel_trial_count=min(parallel_trials, max_trials),
        labels={"service": "housing"},
    )
    plan.add(
        "HyperparameterTuningJob.run"
        if wait
        else "JobServiceClient.create_hyperparameter_tuning_job",
        **run_kwargs(settings, wait),
    )
    return plan


def run_tune(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    tuning = dict(plan.step("aiplatform.HyperparameterTuningJob"))
    tuning["parameter_spec"] = parameter_spec(tuning["parameter_spec"])
    with cloud_errors("tuning job"):
        custom = aiplatform.CustomJob(**plan.step("aiplatform.CustomJob"))
        job = aiplatform.HyperparameterTuningJob(custom_job=custom, **tuning)
        if plan.has("HyperparameterTuningJob.run"):
            job.run(**plan.step("HyperparameterTuningJob.run"))
        else:
            # The SDK's tuning job has no submit(); its run(sync=False) would keep this process
            # alive polling until the job ends. Create it with the job's own GAPIC client.
            submit = plan.step("JobServiceClient.create_hyperparameter_tuning_job")
            resource = job._gca_resource
            if "service_account" in submit:
                resource.trial_job_spec.service_account = submit["service_account"]
            job._gca_resource = job.api_client.create_hyperparameter_tuning_job(
                parent=aiplatform.initializer.global_config.common_location_path(),
                hyperparameter_tuning_job=resource,
            )
            created = job._gca_resource
            return {"job": created.name, "state": created.state.name}
    result: dict[str, Any] = {"job": job.resource_name, "state": job.state.name}
    trials = [t for t in job.trials if t.final_measurement.metrics]
    if trials:
        best = min(trials, key=lambda t: t.final_measurement.metrics[0].value)
        result["best_trial"] = {
            "id": best.id,
            HP_METRIC: best.final_measurement.metrics[0].value,
            "parameters": {p.parameter_id: p.value for p in best.parameters},
        }
    return result


# ---- cleanup --------------------------------------------------------------------------

# How to look up each kind of job from its resource name (custom and tuning jobs have no
# name-only constructor, only ``.get``).
JOB_LOOKUPS = {
    "custom_job": ("aiplatform.CustomJob.get", "resource_name", "CustomJob.delete"),
    "tuning_job": (
        "aiplatform.HyperparameterTuningJob.get",
        "resource_name",
        "HyperparameterTuningJob.delete",
    ),
    "batch_job": (
        "aiplatform.BatchPredictionJob",
        "batch_prediction_job_name",
        "BatchPredictionJob.delete",
    ),
}


# What ``cleanup --blobs`` removes under gs://BUCKET/PREFIX: job outputs and batch files.
# Uploaded model versions (``models/``) back registry Models and go only when named.
SCRATCH_FOLDERS = ("batch", "jobs")


def plan_cleanup(
    settings: VertexSettings,
    endpoint: str | None,
    model: str | None,
    jobs: dict[str, str | None],
    blobs: bool,
    model_files: list[str] | None = None,
) -> Plan:
    plan = new_plan(settings, "cleanup", bucket=blobs or bool(model_files))
    if endpoint:
        plan.add("aiplatform.Endpoint", endpoint_name=endpoint)
        plan.add("Endpoint.undeploy_all", sync=True)
        plan.add("Endpoint.delete", force=True, sync=True)
    if model:
        plan.add("aiplatform.Model", model_name=model)
        plan.add("Model.delete", sync=True)
    for kind, name in jobs.items():
        if name:
            lookup, argument, delete = JOB_LOOKUPS[kind]
            plan.add(lookup, **{argument: name})
            plan.add(delete, sync=True)
    if blobs:
        for folder in SCRATCH_FOLDERS:
            plan.add("storage.delete_prefix", prefix=f"{settings.gcs_root()}/{folder}")
    for named in model_files or []:
        name, _, version = named.partition("/")
        if name not in (SKLEARN_MODEL, KERAS_MODEL) or (version and not version.isdigit()):
            raise UserError(f"--model-files {named!r}: expected MODEL or MODEL/VERSION")
        plan.add("storage.delete_prefix", prefix=f"{settings.gcs_root()}/models/{named}")
    if not plan.steps:
        raise UserError(
            "nothing to clean up: give --endpoint, --model, a job, --blobs or --model-files"
        )
    return plan


def run_cleanup(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    deleted: list[str] = []
    current: Any = None
    with cloud_errors("cleanup"):
        for step in plan.steps:
            call, kwargs = step["call"], step["kwargs"]
            if call.startswith("aiplatform."):
                target: Any = aiplatform
                for part in call.split(".")[1:]:
                    target = getattr(target, part)
                current = target(**kwargs)
            elif call == "storage.delete_prefix":
                count = gcs.delete_prefix(cloud.storage, kwargs["prefix"])
                deleted.append(f"{count} blobs under {kwargs['prefix']}")
            else:
                name = current.resource_name
                getattr(current, call.split(".")[1])(**kwargs)
                if call.endswith(".delete"):
                    deleted.append(name)
    return {"deleted": deleted}
