"""Wiring: load the models, then open gRPC (and REST) on one event loop until a signal.

As TF Serving does, the ports open only after the initial versions are loaded, so a
client that can connect can predict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from service.model_server.config import (
    ConfigError,
    ServerOptions,
    load_model_config,
    single_model_config,
)
from service.model_server.control import ReloadPolicy
from service.model_server.grpc_api import MalformedRequests, ModelService, PredictionService
from service.model_server.limits import InflightLimit
from service.model_server.manager import ModelManager
from service.model_server.metrics import ServerMetrics
from service.model_server.predict import DataPlane
from service.model_server.rest_api import RestApp

log = logging.getLogger("housing.model_server")
SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
# Answers are one float per row, so bounded by the row limit; this only has to exceed that.
GRPC_MAX_SEND_BYTES = 256 * 1024 * 1024


def initial_config(options: ServerOptions) -> tuple[Any, Path]:
    if options.model_config_file is not None:
        return load_model_config(options.model_config_file), options.model_config_file.parent
    if options.model_name and options.model_base_path is not None:
        return single_model_config(options.model_name, options.model_base_path), Path.cwd()
    raise ConfigError("give --model_config_file, or --model_name with --model_base_path")


def repository_root(options: ServerOptions) -> Path | None:
    """The folder a reloaded config's base paths must stay in: the config file's folder,
    or in single-model mode the folder holding the model's folder."""
    if options.model_config_file is not None:
        return options.model_config_file.parent.resolve()
    if options.model_base_path is not None:
        return options.model_base_path.resolve().parent
    return None


class QuietUvicorn:
    """uvicorn without its own signal handling: this server owns shutdown."""

    @staticmethod
    def make(app: RestApp, host: str, port: int) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="none",
            http="httptools",
        )
        return Server(config)


async def poll_files(manager: ModelManager, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await manager.poll()
        except Exception:
            log.exception("file system poll failed")


async def poll_config(manager: ModelManager, path: Path, seconds: float) -> None:
    last = path.read_text() if path.is_file() else ""
    while True:
        await asyncio.sleep(seconds)
        try:
            text = path.read_text()
            if text != last:
                await manager.apply_config(load_model_config(path), path.parent)
                last = text
                log.info("applied the changed %s", path)
        except Exception:
            log.exception("reloading %s failed; keeping the current models", path)


# The model runs in a worker thread holding the GIL for most of a call (~10 ms). At
# Python's default 5 ms switch interval the event loop, woken by each incoming request,
# waits up to that long for the GIL, so requests reach the batch queue late and batches
# stay small. A shorter interval lets the loop enqueue requests while the model runs.
GIL_SWITCH_INTERVAL_S = 0.0005


async def serve(options: ServerOptions) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    config, config_dir = initial_config(options)
    metrics = ServerMetrics()
    workers = options.batching.num_batch_threads if options.batching else (os.cpu_count() or 2)
    executor = ThreadPoolExecutor(max_workers=max(workers, 2), thread_name_prefix="model")
    manager = ModelManager(metrics, executor, options.batching)
    manager.repository_root = repository_root(options)
    await manager.apply_config(config, config_dir)
    limits = options.limits
    predictor = DataPlane(manager, metrics, InflightLimit(limits.max_concurrent_predicts))

    server = grpc.aio.server(
        interceptors=[MalformedRequests()],
        options=[
            # Explicit: a larger message is refused (RESOURCE_EXHAUSTED) before it is buffered.
            ("grpc.max_receive_message_length", limits.max_request_bytes),
            ("grpc.max_send_message_length", GRPC_MAX_SEND_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(predictor, limits), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(
            manager, config_dir, ReloadPolicy(options.reload_config, options.reload_secret)
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(f"{options.host}:{options.port}") == 0:
        raise ConfigError(f"cannot bind gRPC port {options.host}:{options.port}")
    await server.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("Running gRPC ModelServer at %s:%d", options.host, options.port)

    tasks: list[asyncio.Task] = []
    rest = rest_task = None
    if options.rest_api_port:
        rest = QuietUvicorn.make(
            RestApp(predictor, metrics, options.prometheus_path, limits),
            options.host,
            options.rest_api_port,
        )
        rest_task = asyncio.create_task(rest.serve())
        log.info("Exporting HTTP/REST API at %s:%d", options.host, options.rest_api_port)
    if options.file_system_poll_wait_seconds > 0:
        tasks.append(
            asyncio.create_task(poll_files(manager, options.file_system_poll_wait_seconds))
        )
    if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
        tasks.append(
            asyncio.create_task(
                poll_config(
                    manager, options.model_config_file, options.model_config_file_poll_wait_seconds
                )
            )
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down")
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if rest is not None:
        rest.should_exit = True
    await server.stop(grace=5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if rest_task is not None:
        await rest_task
    await manager.close()
    executor.shutdown(wait=False, cancel_futures=True)


def run(options: ServerOptions) -> int:
    """Serve until SIGTERM/SIGINT, then exit at once.

    After a clean shutdown nothing is left to flush, but finalising TensorFlow's and gRPC's
    C++ runtimes at interpreter exit takes seconds (about 8 s here), which would outlast
    ``docker stop``'s grace period; so the process ends with ``os._exit``.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(options))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
