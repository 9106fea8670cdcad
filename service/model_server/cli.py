"""``housing serve model-server``: TF Serving's flags, so compose files work with either."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from service.model_server.limits import (
    DEFAULT_MAX_CONCURRENT_PREDICTS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_STRING_BYTES,
)

if TYPE_CHECKING:
    from service.model_server.config import ServerOptions

HELP = "the project's model server (TF Serving's gRPC + REST protocol, sklearn and SavedModel)"
DEFAULT_BATCH_THREADS = 1


def flag_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=port, default=8500, help="gRPC port (default 8500)")
    parser.add_argument(
        "--rest_api_port", type=port, default=8501, help="REST port (default 8501; 0 disables REST)"
    )
    parser.add_argument(
        "--host", default="0.0.0.0", help="address to bind both ports (default 0.0.0.0)"
    )
    parser.add_argument(
        "--model_config_file",
        type=Path,
        help="ModelServerConfig text proto (TF Serving's); relative base_path values are "
        "relative to this file's folder",
    )
    parser.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="re-read --model_config_file this often and apply changes (0: never; default 0)",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="look for new or removed version folders this often (default 1; 0: never)",
    )
    parser.add_argument(
        "--model_name", help="single-model mode: the model's name (with --model_base_path)"
    )
    parser.add_argument(
        "--model_base_path",
        type=Path,
        help="single-model mode: folder of integer version folders; the platform is detected "
        "(model.joblib: sklearn, saved_model.pb: tensorflow)",
    )
    parser.add_argument(
        "--enable_batching",
        type=flag_bool,
        nargs="?",
        const=True,
        default=False,
        help="merge concurrent Predict calls into one model call",
    )
    parser.add_argument(
        "--batching_parameters_file",
        type=Path,
        help="BatchingParameters text proto (max_batch_size, batch_timeout_micros, "
        "max_enqueued_batches, num_batch_threads)",
    )
    parser.add_argument(
        "--enable_reload_config",
        type=flag_bool,
        nargs="?",
        const=True,
        default=False,
        help="accept HandleReloadConfigRequest (off by default): from loopback peers only, or "
        "with --reload_secret_file from callers sending that secret",
    )
    parser.add_argument(
        "--reload_secret_file",
        type=Path,
        help="file holding a shared secret (at least 16 bytes); with it, a reload must carry "
        "the secret in the 'housing-reload-secret' gRPC metadata, from any peer",
    )
    parser.add_argument(
        "--monitoring_config_file",
        type=Path,
        help="MonitoringConfig text proto; prometheus_config { enable: true } serves metrics "
        "on the REST port",
    )
    parser.add_argument(
        "--max_request_rows",
        type=positive,
        default=DEFAULT_MAX_ROWS,
        help="most rows one Predict may carry; more: RESOURCE_EXHAUSTED, REST 413 "
        f"(default {DEFAULT_MAX_ROWS:,}; not a TF Serving flag)",
    )
    parser.add_argument(
        "--max_request_bytes",
        type=positive,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest gRPC message and REST body accepted; larger: RESOURCE_EXHAUSTED, "
        f"REST 413 (default {DEFAULT_MAX_REQUEST_BYTES} = gRPC's default; TF Serving "
        "allows 2 GiB)",
    )
    parser.add_argument(
        "--max_string_bytes",
        type=positive,
        default=DEFAULT_MAX_STRING_BYTES,
        help="longest value of a string input; longer: RESOURCE_EXHAUSTED, REST 413 "
        f"(default {DEFAULT_MAX_STRING_BYTES})",
    )
    parser.add_argument(
        "--max_concurrent_predicts",
        type=non_negative,
        default=DEFAULT_MAX_CONCURRENT_PREDICTS,
        help="Predict calls in flight at once; more: RESOURCE_EXHAUSTED, REST 429 + "
        f"Retry-After (default {DEFAULT_MAX_CONCURRENT_PREDICTS}; 0: no cap)",
    )


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    """Validate flag combinations and read the batching and monitoring files."""
    from core.errors import UserError
    from service.model_server.config import (
        BatchingOptions,
        ServerOptions,
        read_batching_parameters,
        read_monitoring_config,
    )
    from service.model_server.limits import RequestLimits

    if args.model_config_file is None and not (args.model_name and args.model_base_path):
        raise UserError("give --model_config_file, or --model_name with --model_base_path")
    if args.model_config_file is not None and (args.model_name or args.model_base_path):
        raise UserError("--model_config_file excludes --model_name/--model_base_path")
    if args.port == 0 or args.port == args.rest_api_port:
        raise UserError("--port must be non-zero and differ from --rest_api_port")
    batching = None
    if args.enable_batching:
        # One batch thread by default: a Python process runs one model call at a time
        # (the GIL), so more threads only contend; TF Serving's own default differs.
        batching = (
            read_batching_parameters(args.batching_parameters_file, DEFAULT_BATCH_THREADS)
            if args.batching_parameters_file
            else BatchingOptions(num_batch_threads=DEFAULT_BATCH_THREADS)
        )
    elif args.batching_parameters_file:
        raise UserError("--batching_parameters_file needs --enable_batching")
    reload_secret = None
    if args.reload_secret_file:
        if not args.enable_reload_config:
            raise UserError("--reload_secret_file needs --enable_reload_config")
        from service.model_server.control import read_secret_file

        reload_secret = read_secret_file(args.reload_secret_file)
    prometheus_path = None
    if args.monitoring_config_file:
        prometheus_path = read_monitoring_config(args.monitoring_config_file)
        if prometheus_path and not args.rest_api_port:
            raise UserError("Prometheus metrics are served on the REST port: set --rest_api_port")
    return ServerOptions(
        port=args.port,
        rest_api_port=args.rest_api_port,
        host=args.host,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        batching=batching,
        prometheus_path=prometheus_path,
        limits=RequestLimits(
            max_rows=args.max_request_rows,
            max_request_bytes=args.max_request_bytes,
            max_concurrent_predicts=args.max_concurrent_predicts,
            max_string_bytes=args.max_string_bytes,
        ),
        reload_config=args.enable_reload_config,
        reload_secret=reload_secret,
    )


def handle(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Model calls already run concurrently with request handling; native thread pools
    # (OpenMP in HistGradientBoosting, BLAS) on top of that only oversubscribe the cores.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    from service.model_server.server import run

    return run(options)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model-server", help=HELP, description=HELP)
    add_arguments(parser)
    parser.set_defaults(func=handle)
