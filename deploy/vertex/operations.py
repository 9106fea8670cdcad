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

from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.errors import UserError
from deploy.vertex import gcs
from deploy.vertex.cloud import Cloud, cloud_errors
from deploy.vertex.instances import instance_key, prediction_value, read_table, to_instances
from deploy.vertex.settings import VertexSettings
from training.repository import ModelRepository, RepositoryError

PREDICTION_COLUMN = "predicted_median_house_value"
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

    def to_json(self) -> dict[str, Any]:
        version = {} if self.version is None else {"version": self.version}
        return {
            "operation": self.operation,
            "project": self.project,
            "location": self.location,
            **version,
            "steps": self.steps,
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
        if plan.has("Endpoint.undeploy"):
            endpoint.undeploy(**plan.step("Endpoint.undeploy"))
        else:
            endpoint.undeploy_all(**plan.step("Endpoint.undeploy_all"))
        endpoint._sync_gca_resource()
    return {
        "endpoint": endpoint.resource_name,
        "deployed_models": [d.id for d in endpoint.gca_resource.deployed_models],
    }


# ---- predict --------------------------------------------------------------------------


def plan_predict(settings: VertexSettings, endpoint: str, instances_file: Path) -> Plan:
    plan = new_plan(settings, "predict")
    instances = to_instances(read_table(instances_file))
    plan.add("aiplatform.Endpoint", endpoint_name=endpoint)
    plan.add("Endpoint.predict", instances=instances)
    return plan


def run_predict(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    with cloud_errors("predict"):
        endpoint = aiplatform.Endpoint(**plan.step("aiplatform.Endpoint"))
        response = endpoint.predict(**plan.step("Endpoint.predict"))
    return {
        "predictions": [prediction_value(p) for p in response.predictions],
        "deployed_model_id": response.deployed_model_id,
        "model": response.model_resource_name,
        "model_version_id": response.model_version_id,
    }


# ---- batch-predict --------------------------------------------------------------------


def plan_batch_predict(
    settings: VertexSettings, model: str, input_file: Path, output_file: Path
) -> Plan:
    plan = new_plan(settings, "batch-predict", bucket=True)
    if output_file.suffix.lower() not in (".csv", ".parquet"):
        raise UserError(f"{output_file}: output must be .csv or .parquet")
    folder = f"{settings.gcs_root()}/batch/{stamp()}"
    frame = read_table(input_file)
    source = f"{folder}/instances.jsonl"
    plan.add(
        "storage.upload_jsonl", source=str(input_file), destination=source, instances=len(frame)
    )
    plan.add("aiplatform.Model", model_name=model)
    job: dict[str, Any] = {
        "job_display_name": f"housing-batch-{stamp()}",
        "gcs_source": source,
        "gcs_destination_prefix": f"{folder}/output",
        "instances_format": "jsonl",
        "predictions_format": "jsonl",
        **machine_kwargs(settings),
        "starting_replica_count": settings.min_replicas,
        "max_replica_count": max(settings.max_replicas, settings.min_replicas),
        "sync": True,
    }
    if settings.service_account:
        job["service_account"] = settings.service_account
    plan.add("Model.batch_predict", **job)
    plan.add("storage.merge_results", output=str(output_file), column=PREDICTION_COLUMN)
    return plan


def run_batch_predict(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    import pandas as pd
    from google.cloud import aiplatform

    upload = plan.step("storage.upload_jsonl")
    frame = read_table(Path(upload["source"]))
    instances = to_instances(frame)
    with cloud_errors(f"write {upload['destination']}"):
        gcs.upload_text(
            cloud.storage,
            "".join(json.dumps(i) + "\n" for i in instances),
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
    merge = plan.step("storage.merge_results")
    values = [results.get(instance_key(i)) for i in instances]
    frame[merge["column"]] = pd.Series(values, index=frame.index, dtype="float64")
    output = Path(merge["output"])
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        frame.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)
    missing = sum(v is None for v in values)
    return {
        "job": job.resource_name,
        "output_directory": output_dir,
        "rows": len(frame),
        "predicted": len(frame) - missing,
        "missing": missing,
        "errors": errors,
        "output": str(output),
    }


# ---- train / tune ---------------------------------------------------------------------


def worker_pool_specs(settings: VertexSettings, trainer_args: list[str]) -> list[dict[str, Any]]:
    if not settings.trainer_image:
        raise UserError(
            "no trainer image: pass --trainer-image or set HOUSING_VERTEX_TRAINER_IMAGE"
        )
    machine: dict[str, Any] = {"machine_type": settings.machine_type}
    if settings.accelerator_type:
        machine["accelerator_type"] = settings.accelerator_type
        machine["accelerator_count"] = settings.accelerators
    return [
        {
            "machine_spec": machine,
            "replica_count": 1,
            "container_spec": {
                "image_uri": settings.trainer_image,
                "command": ["python", "-m", TRAINER_MODULE],
                "args": trainer_args,
            },
        }
    ]


def custom_job_kwargs(settings: VertexSettings, name: str, trainer_args: list[str]) -> dict:
    return {
        "display_name": name,
        "worker_pool_specs": worker_pool_specs(settings, trainer_args),
        "base_output_dir": f"{settings.gcs_root()}/jobs/{name}",
        "staging_bucket": f"gs://{settings.bucket}",
        "labels": {"service": "housing"},
    }


def run_kwargs(settings: VertexSettings, wait: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"sync": wait} if wait else {}
    if settings.service_account:
        kwargs["service_account"] = settings.service_account
    return kwargs


def plan_train(settings: VertexSettings, trainer_args: list[str], wait: bool) -> Plan:
    plan = new_plan(settings, "train", bucket=True)
    plan.add(
        "aiplatform.CustomJob",
        **custom_job_kwargs(settings, f"housing-keras-{stamp()}", trainer_args),
    )
    plan.add("CustomJob.run" if wait else "CustomJob.submit", **run_kwargs(settings, wait))
    return plan


def run_train(cloud: Cloud, plan: Plan) -> dict[str, Any]:
    from google.cloud import aiplatform

    with cloud_errors("training job"):
        job = aiplatform.CustomJob(**plan.step("aiplatform.CustomJob"))
        if plan.has("CustomJob.run"):
            job.run(**plan.step("CustomJob.run"))
        else:
            job.submit(**plan.step("CustomJob.submit"))
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


def plan_cleanup(
    settings: VertexSettings,
    endpoint: str | None,
    model: str | None,
    jobs: dict[str, str | None],
    blobs: bool,
) -> Plan:
    plan = new_plan(settings, "cleanup", bucket=blobs)
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
        plan.add("storage.delete_prefix", prefix=settings.gcs_root())
    if not plan.steps:
        raise UserError("nothing to clean up: give --endpoint, --model, a job or --blobs")
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
