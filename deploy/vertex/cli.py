"""``housing vertex ...``: the Vertex AI operations as subcommands.

Every subcommand accepts the shared settings flags (which override ``HOUSING_VERTEX_*``)
and ``--dry-run``, which prints the plan (exact resources and SDK calls) as JSON and
touches nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core import console
from core.contract import KERAS_MODEL, SKLEARN_MODEL
from core.errors import UserError

# flag -> settings field, for the shared settings flags
SETTINGS_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--project": ("project", str, "Google Cloud project id"),
    "--location": ("location", str, "region (default us-central1)"),
    "--bucket": ("bucket", str, "GCS bucket name for artifacts and jobs"),
    "--prefix": ("prefix", str, "folder inside the bucket (default housing)"),
    "--service-account": ("service_account", str, "service account endpoints and jobs run as"),
    "--machine-type": ("machine_type", str, "machine type (default n1-standard-4)"),
    "--accelerator-type": ("accelerator_type", str, "accelerator, e.g. NVIDIA_TESLA_T4"),
    "--accelerator-count": ("accelerator_count", int, "accelerators per replica"),
    "--min-replicas": ("min_replicas", int, "minimum replicas (default 1)"),
    "--max-replicas": ("max_replicas", int, "maximum replicas (default 1)"),
    "--serving-image": ("serving_image", str, "the project's serving image (both models)"),
    "--keras-serving-image": ("keras_serving_image", str, "other housing_keras container"),
    "--trainer-image": ("trainer_image", str, "the project's trainer image (train, tune)"),
    "--trainer-image-gpu": ("trainer_image_gpu", str, "its CUDA build (with an accelerator)"),
    "--api-endpoint": ("api_endpoint", str, "Vertex API host override"),
    "--models-dir": ("models_dir", Path, "local model repository (default models/)"),
}


# Modest by default: 12 trials, 3 at a time, each one n1-standard-4 replica for a few minutes
# (≈ 1–2 machine-hours in all; see the README for the price). The book's 100 trials, 20 in
# parallel, are a flag away.
DEFAULT_TRIALS = 12
DEFAULT_PARALLEL_TRIALS = 3


def settings_from(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from deploy.vertex.settings import VertexSettings

    overrides = {
        field: getattr(args, field)
        for field, _, _ in SETTINGS_FLAGS.values()
        if getattr(args, field, None) is not None
    }
    try:
        return VertexSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"invalid Vertex setting {where}: {first['msg']}") from None


def emit(payload: dict[str, Any]) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def execute(args: argparse.Namespace, planner: Any, runner: Any) -> int:
    """Build the plan; print it (dry run) or run it and print the result."""
    from deploy.vertex.cloud import connect

    settings = settings_from(args)
    plan = planner(settings, args)
    if args.dry_run:
        emit({"dry_run": True, **plan.to_json()})
        return 0
    with console.heartbeat(f"vertex {plan.operation}"):  # Vertex calls block for minutes
        result = runner(connect(settings), plan)
    emit({"operation": plan.operation, **result})
    return 0


def trainer_args(args: argparse.Namespace) -> list[str]:
    """Arguments for ``python -m deploy.vertex.trainer`` inside the job."""
    out = [f"--epochs={args.epochs}"]
    if args.arch:
        out.append(f"--arch={args.arch}")
    return out


def traffic_split(text: str | None) -> dict[str, int] | None:
    if text is None:
        return None
    try:
        split = json.loads(text)
        if not isinstance(split, dict):
            raise ValueError
        split = {str(k): int(v) for k, v in split.items()}
    except (ValueError, TypeError):
        raise UserError(
            '--traffic-split: expected JSON like {"0": 90, "DEPLOYED_ID": 10}'
        ) from None
    if sum(split.values()) != 100:
        raise UserError(f"--traffic-split must add up to 100, not {sum(split.values())}")
    return split


def handlers() -> dict[str, tuple[Any, Any]]:
    """subcommand -> (planner(settings, args), runner(cloud, plan)), imported lazily."""
    from deploy.vertex import operations as ops

    return {
        "bucket": (lambda s, a: ops.plan_bucket(s), ops.run_bucket),
        "upload": (lambda s, a: ops.plan_upload(s, a.model, a.version, a.label), ops.run_upload),
        "deploy": (
            lambda s, a: ops.plan_deploy(
                s,
                a.model,
                a.endpoint,
                a.endpoint_name,
                a.traffic_percentage,
                traffic_split(a.traffic_split),
            ),
            ops.run_deploy,
        ),
        "predict": (
            lambda s, a: ops.plan_predict(
                s, a.endpoint, a.instances, a.model_name, a.version, a.id_column, a.output
            ),
            ops.run_predict,
        ),
        "batch-predict": (
            lambda s, a: ops.plan_batch_predict(
                s,
                a.model,
                a.input,
                a.output,
                a.model_name,
                a.version,
                a.bigquery_source,
                a.bigquery_destination,
            ),
            ops.run_batch_predict,
        ),
        "train": (
            lambda s, a: ops.plan_train(s, trainer_args(a), a.wait, a.replica_count),
            ops.run_train,
        ),
        "tune": (
            lambda s, a: ops.plan_tune(s, trainer_args(a), a.max_trials, a.parallel_trials, a.wait),
            ops.run_tune,
        ),
        "undeploy": (
            lambda s, a: ops.plan_undeploy(s, a.endpoint, a.deployed_model_id),
            ops.run_undeploy,
        ),
        "cleanup": (
            lambda s, a: ops.plan_cleanup(
                s,
                a.endpoint,
                a.model,
                {
                    "custom_job": a.custom_job,
                    "tuning_job": a.tuning_job,
                    "batch_job": a.batch_job,
                },
                a.blobs,
                a.model_files,
            ),
            ops.run_cleanup,
        ),
    }


def handle(args: argparse.Namespace) -> int:
    planner, runner = handlers()[args.vertex_command]
    return execute(args, planner, runner)


def percentage(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (override HOUSING_VERTEX_* variables)")
    for flag, (field, kind, help_text) in SETTINGS_FLAGS.items():
        group.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    common.add_argument(
        "--dry-run", action="store_true", help="print the resources and SDK calls as JSON only"
    )

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(
            name, help=help_text, description=help_text, parents=[common]
        )
        parser.set_defaults(func=handle, vertex_command=name)
        return parser

    add("bucket", "create the GCS bucket in the configured location, or reuse it")

    upload = add("upload", "copy a model version to GCS and register it with Model.upload")
    upload.add_argument("--model", required=True, help="housing_sklearn or housing_keras")
    which = upload.add_mutually_exclusive_group()
    which.add_argument("--version", type=positive, help="version number (default: latest)")
    which.add_argument("--label", help="version label, e.g. stable")

    deploy = add("deploy", "deploy an uploaded model to an endpoint (new or existing)")
    deploy.add_argument("--model", required=True, help="Vertex model id or resource name")
    deploy.add_argument("--endpoint", help="existing endpoint id or name (default: create one)")
    deploy.add_argument("--endpoint-name", default="housing", help="display name of a new endpoint")
    deploy.add_argument(
        "--traffic-percentage",
        type=percentage,
        default=100,
        help="share of traffic for this model (e.g. 10 for a canary; default 100)",
    )
    deploy.add_argument(
        "--traffic-split", help='explicit split as JSON, e.g. {"0": 90, "OLD_ID": 10}'
    )

    def add_served_model(parser: argparse.ArgumentParser, required: bool) -> None:
        parser.add_argument(
            "--model-name",
            choices=(SKLEARN_MODEL, KERAS_MODEL),
            required=required,
            help="the model the endpoint serves: how missing values are encoded",
        )
        parser.add_argument(
            "--version",
            type=positive,
            help="its local version (default: the stable one) whose imputation is used",
        )

    predict = add(
        "predict",
        "online predictions for the rows of a file: validated like batch scoring, sent in "
        "requests of at most the container's instance limit",
    )
    predict.add_argument("--endpoint", required=True, help="endpoint id or resource name")
    predict.add_argument(
        "--instances", type=Path, required=True, help="JSON, JSONL, CSV or Parquet file"
    )
    add_served_model(predict, required=True)
    predict.add_argument("--id-column", help="column that identifies each row in the results")
    predict.add_argument("--output", type=Path, help="also write the rows with predictions")

    batch = add("batch-predict", "batch prediction job: upload instances, wait, merge results")
    batch.add_argument("--model", required=True, help="Vertex model id or resource name")
    batch.add_argument("--input", type=Path, help="CSV, Parquet, JSON or JSONL file")
    batch.add_argument("--output", type=Path, help=".csv or .parquet (every input column kept)")
    add_served_model(batch, required=False)
    batch.add_argument(
        "--bigquery-source", help="bq://PROJECT.DATASET.TABLE read by Vertex instead of --input"
    )
    batch.add_argument(
        "--bigquery-destination", help="bq://PROJECT[.DATASET] for its results (default: project)"
    )

    for name, help_text in (
        ("train", "run the Keras training as a Vertex CustomJob"),
        ("tune", "HyperparameterTuningJob over the book's search space (minimises val_rmse)"),
    ):
        parser = add(name, help_text)
        parser.add_argument("--epochs", type=positive, default=100, help="training epochs")
        parser.add_argument("--arch", help="model architecture passed to the trainer")
        parser.add_argument("--wait", action="store_true", help="wait for the job to finish")
        if name == "train":
            parser.add_argument(
                "--replica-count",
                type=positive,
                default=1,
                help="machines: a chief and N-1 workers under MultiWorkerMirroredStrategy",
            )
        if name == "tune":
            parser.add_argument(
                "--max-trials",
                type=positive,
                default=DEFAULT_TRIALS,
                help=f"trials (default {DEFAULT_TRIALS}: each is a training job you pay for; "
                "the book used 100)",
            )
            parser.add_argument(
                "--parallel-trials",
                type=positive,
                default=DEFAULT_PARALLEL_TRIALS,
                help=f"trials at once (default {DEFAULT_PARALLEL_TRIALS}; more finishes sooner "
                "but learns less from earlier trials)",
            )

    undeploy = add("undeploy", "undeploy one deployed model, or all, from an endpoint")
    undeploy.add_argument("--endpoint", required=True, help="endpoint id or resource name")
    undeploy.add_argument("--deployed-model-id", help="the deployed model (default: all)")

    cleanup = add("cleanup", "undeploy and delete the endpoint, model, jobs and blobs given")
    cleanup.add_argument("--endpoint", help="endpoint to undeploy and delete")
    cleanup.add_argument("--model", help="model to delete")
    cleanup.add_argument("--custom-job", help="custom job to delete")
    cleanup.add_argument("--tuning-job", help="hyperparameter tuning job to delete")
    cleanup.add_argument("--batch-job", help="batch prediction job to delete")
    cleanup.add_argument(
        "--blobs",
        action="store_true",
        help="delete job outputs and batch files under gs://BUCKET/PREFIX/ (never uploaded models)",
    )
    cleanup.add_argument(
        "--model-files",
        action="append",
        metavar="MODEL[/VERSION]",
        help="also delete the uploaded files of this model (or one version): its registry "
        "versions stop working",
    )
