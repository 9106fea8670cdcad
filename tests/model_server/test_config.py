"""Flags and TF Serving's config text protos, without starting a server."""

from __future__ import annotations

import grpc
import pytest

from service.model_server.cli import add_arguments, options_from_args
from service.model_server.config import (
    ConfigError,
    detect_platform,
    read_batching_parameters,
    read_monitoring_config,
)
from service.model_server.control import SECRET_METADATA, ReloadPolicy, is_loopback_peer
from service.model_server.errors import ServingError
from tests.commands import run_python


def test_batching_parameters_text_proto(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 500 }\n"
        "max_enqueued_batches { value: 7 }\nnum_batch_threads { value: 3 }\n"
        "pad_variable_length_inputs: true\n"
    )
    options = read_batching_parameters(path, cpu_count=2)
    assert (options.max_batch_size, options.batch_timeout_micros) == (128, 500)
    assert (options.max_enqueued_batches, options.num_batch_threads) == (7, 3)
    assert options.max_queued_rows == 128 * 7
    path.write_text("max_batch_size { value: 8 }\n")
    defaults = read_batching_parameters(path, cpu_count=5)
    assert (defaults.max_batch_size, defaults.num_batch_threads) == (8, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_sise { value: 1 }", "max_batch_sise"),
        ("max_batch_size { value: 0 }", "at least 1"),
    ],
)
def test_bad_batching_parameters_are_named(tmp_path, text, message):
    path = tmp_path / "batching.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_batching_parameters(path, cpu_count=2)


def test_monitoring_config(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text('prometheus_config { enable: true, path: "/metrics" }')
    assert read_monitoring_config(path) == "/metrics"
    path.write_text("prometheus_config { enable: true }")
    assert read_monitoring_config(path) == "/monitoring/prometheus/metrics"
    path.write_text("prometheus_config { enable: false }")
    assert read_monitoring_config(path) is None
    path.write_text("prometheus { enable: true }")
    with pytest.raises(ConfigError, match="prometheus"):
        read_monitoring_config(path)


def test_platform_is_detected_from_the_newest_version(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    assert detect_platform(tmp_path) == "tensorflow"
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "model.joblib").write_bytes(b"")
    assert detect_platform(tmp_path) == "sklearn"
    with pytest.raises(ConfigError, match="no version folder"):
        detect_platform(tmp_path / "2")


def parse(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_follow_tf_serving(tmp_path):
    args = parse(
        "--port=9000",
        "--rest_api_port=0",
        "--model_config_file=m.config",
        "--enable_batching=false",
    )
    options = options_from_args(args)
    assert (options.port, options.rest_api_port, options.batching) == (9000, 0, None)
    assert options.file_system_poll_wait_seconds == 1.0
    batching = options_from_args(parse("--model_config_file=m.config", "--enable_batching"))
    assert batching.batching is not None and batching.batching.max_batch_size == 1000


def test_bad_flags_exit_with_one_line(tmp_path):
    result = run_python("-m", "service.model_server", "--model_name", "x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("model-server: error:")
    assert "--model_base_path" in result.stderr


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.8.9.1:5000", True),
        ("ipv6:[::1]:5000", True),
        ("ipv6:%5B::1%5D:41914", True),  # what grpcio reports
        ("ipv6:%5Bfd00::2%5D:41914", False),
        ("ipv6:[::ffff:127.0.0.1]:5000", True),
        ("unix:/run/model-server.sock", True),
        ("ipv4:10.0.0.7:5000", False),
        ("ipv6:[fd00::2]:5000", False),
        ("ipv6:[::ffff:192.0.2.2]:5000", False),
        ("ipv4:localhost:5000", False),
        ("", False),
    ],
)
def test_loopback_peers(peer, loopback):
    assert is_loopback_peer(peer) is loopback


def test_reload_policy_off_loopback_and_secret():
    with pytest.raises(ServingError) as off:
        ReloadPolicy().authorize("ipv4:127.0.0.1:1", {})
    assert off.value.code == grpc.StatusCode.UNIMPLEMENTED
    loopback_only = ReloadPolicy(enabled=True)
    loopback_only.authorize("ipv4:127.0.0.1:1", {})
    with pytest.raises(ServingError) as remote:
        loopback_only.authorize("ipv4:192.0.2.2:1", {SECRET_METADATA: "anything"})
    assert remote.value.code == grpc.StatusCode.PERMISSION_DENIED
    secret = ReloadPolicy(enabled=True, secret=b"s" * 20)
    secret.authorize("ipv4:192.0.2.2:1", {SECRET_METADATA: "s" * 20})
    for sent in ({}, {SECRET_METADATA: "s" * 19}, {SECRET_METADATA: b"t" * 20}):
        with pytest.raises(ServingError) as denied:
            secret.authorize("ipv4:127.0.0.1:1", sent)  # loopback too needs it
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_reload_flags(tmp_path):
    from core.errors import UserError

    secret_file = tmp_path / "secret"
    secret_file.write_text("x" * 32 + "\n")
    base = ["--model_config_file=m.config"]
    assert options_from_args(parse(*base)).reload_config is False
    options = options_from_args(
        parse(*base, "--enable_reload_config", f"--reload_secret_file={secret_file}")
    )
    assert options.reload_config and options.reload_secret == b"x" * 32
    with pytest.raises(UserError, match="needs --enable_reload_config"):
        options_from_args(parse(*base, f"--reload_secret_file={secret_file}"))
    secret_file.write_text("short")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        options_from_args(
            parse(*base, "--enable_reload_config", f"--reload_secret_file={secret_file}")
        )
