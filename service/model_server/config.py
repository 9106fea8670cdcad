"""The server's settings: TF Serving's flags, its config files, and their text protos.

``ModelServerConfig`` comes from ``tensorflow-serving-api``. That package does not ship
``BatchingParameters`` (session_bundle_config.proto) nor ``MonitoringConfig``
(monitoring_config.proto), so when they are absent the same messages, with TF Serving's
field names, are built here: the same text files parse, and unknown fields are errors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from service.model_server.limits import RequestLimits
from training.repository import (
    JOBLIB_NAME,
    PLATFORM_SKLEARN,
    PLATFORM_TENSORFLOW,
    RepositoryError,
    read_config_file,
)

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigError(RepositoryError):
    """A flag or a config file is wrong; the message names which."""


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters, with its defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 2

    @property
    def max_queued_rows(self) -> int:
        return self.max_batch_size * self.max_enqueued_batches


@dataclass(frozen=True)
class ServerOptions:
    port: int = 8500
    rest_api_port: int = 8501
    host: str = "0.0.0.0"
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    model_name: str | None = None
    model_base_path: Path | None = None
    batching: BatchingOptions | None = None
    prometheus_path: str | None = None
    limits: RequestLimits = field(default_factory=RequestLimits)
    # HandleReloadConfigRequest: off unless enabled; then loopback only, or the secret.
    reload_config: bool = False
    reload_secret: bytes | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


def _wrapper_field(name: str, number: int, wrapper: str) -> descriptor_pb2.FieldDescriptorProto:
    return descriptor_pb2.FieldDescriptorProto(
        name=name,
        number=number,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=f".google.protobuf.{wrapper}",
    )


def _scalar_field(
    name: str,
    number: int,
    kind: descriptor_pb2.FieldDescriptorProto.Type.ValueType,
    repeated: bool = False,
) -> descriptor_pb2.FieldDescriptorProto:
    label = (
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        if repeated
        else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    )
    return descriptor_pb2.FieldDescriptorProto(name=name, number=number, label=label, type=kind)


def _build_messages() -> dict[str, type]:
    """BatchingParameters and MonitoringConfig as in TF Serving's .proto files."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    types = descriptor_pb2.FieldDescriptorProto
    batching = descriptor_pb2.DescriptorProto(
        name="BatchingParameters",
        field=[
            _wrapper_field("max_batch_size", 1, "Int64Value"),
            _wrapper_field("batch_timeout_micros", 2, "Int64Value"),
            _wrapper_field("max_enqueued_batches", 3, "Int64Value"),
            _wrapper_field("num_batch_threads", 4, "Int64Value"),
            _wrapper_field("thread_pool_name", 5, "StringValue"),
            _scalar_field("allowed_batch_sizes", 6, types.TYPE_INT64, repeated=True),
            _scalar_field("pad_variable_length_inputs", 7, types.TYPE_BOOL),
            _wrapper_field("enable_large_batch_splitting", 8, "BoolValue"),
            _wrapper_field("max_execution_batch_size", 9, "Int64Value"),
            _scalar_field("batch_padding_policy", 10, types.TYPE_STRING),
        ],
    )
    prometheus = descriptor_pb2.DescriptorProto(
        name="PrometheusConfig",
        field=[
            _scalar_field("enable", 1, types.TYPE_BOOL),
            _scalar_field("path", 2, types.TYPE_STRING),
        ],
    )
    monitoring = descriptor_pb2.DescriptorProto(
        name="MonitoringConfig",
        field=[
            descriptor_pb2.FieldDescriptorProto(
                name="prometheus_config",
                number=1,
                label=types.LABEL_OPTIONAL,
                type=types.TYPE_MESSAGE,
                type_name=".tensorflow.serving.PrometheusConfig",
            )
        ],
    )
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="housing/model_server_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
        message_type=[batching, prometheus, monitoring],
    )
    pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in ("BatchingParameters", "MonitoringConfig")
    }


def _message_class(module: str, name: str) -> type:
    """TF Serving's own class when the installed package has it, else the built one."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return _build_messages()[name]


def _parse_text(path: Path, message: Any, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        text_format.Parse(path.read_text(), message)
    except text_format.ParseError as exc:
        raise ConfigError(f"{path} is not a valid {what}: {exc}") from exc
    return message


def read_batching_parameters(path: Path, cpu_count: int) -> BatchingOptions:
    cls = _message_class(
        "tensorflow_serving.servables.tensorflow.session_bundle_config_pb2", "BatchingParameters"
    )
    params = _parse_text(path, cls(), "batching parameters file")
    defaults = BatchingOptions(num_batch_threads=cpu_count)

    def value(name: str, default: int) -> int:
        return int(getattr(params, name).value) if params.HasField(name) else default

    options = BatchingOptions(
        max_batch_size=value("max_batch_size", defaults.max_batch_size),
        batch_timeout_micros=value("batch_timeout_micros", defaults.batch_timeout_micros),
        max_enqueued_batches=value("max_enqueued_batches", defaults.max_enqueued_batches),
        num_batch_threads=value("num_batch_threads", defaults.num_batch_threads),
    )
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(options, name) < 1:
            raise ConfigError(f"{path}: {name} must be at least 1")
    if options.batch_timeout_micros < 0:
        raise ConfigError(f"{path}: batch_timeout_micros must not be negative")
    return options


def read_monitoring_config(path: Path) -> str | None:
    """The Prometheus path when the MonitoringConfig enables it, else None."""
    cls = _message_class("tensorflow_serving.config.monitoring_config_pb2", "MonitoringConfig")
    config = _parse_text(path, cls(), "monitoring config file")
    if not config.prometheus_config.enable:
        return None
    path_value = config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
    if not path_value.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/'")
    return path_value


def detect_platform(base_path: Path) -> str:
    """Single-model mode: the newest version folder says which framework it holds."""
    versions = sorted(
        (p for p in base_path.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    for version_dir in reversed(versions):
        if (version_dir / JOBLIB_NAME).is_file():
            return PLATFORM_SKLEARN
        if (version_dir / "saved_model.pb").is_file():
            return PLATFORM_TENSORFLOW
    raise ConfigError(
        f"--model_base_path {base_path}: no version folder holds {JOBLIB_NAME} or saved_model.pb"
    )


def single_model_config(name: str, base_path: Path) -> model_server_config_pb2.ModelServerConfig:
    if not base_path.is_dir():
        raise ConfigError(f"--model_base_path {base_path} is not a directory")
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = str(base_path.resolve())
    entry.model_platform = detect_platform(base_path)
    return config


def load_model_config(path: Path) -> model_server_config_pb2.ModelServerConfig:
    if not path.is_file():
        raise ConfigError(f"--model_config_file {path} does not exist")
    config = read_config_file(path)
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: only model_config_list is supported")
    return config
