"""Settings precedence, env names, the CLI's flags, and the training ranges."""

from __future__ import annotations

import argparse
import os

import pytest
from pydantic import ValidationError

from core.errors import UserError
from service.gateway import cli
from service.gateway.ranges import TRAINING_RANGES
from service.gateway.settings import GatewaySettings
from tests.commands import run_python


def test_documented_env_names(monkeypatch, tmp_path):
    env = {
        "HOUSING_UPSTREAMS": '{"housing_sklearn": "ms:8500", "housing_keras": "tfs:8500"}',
        "HOUSING_DEFAULT_MODEL": "housing_keras",
        "HOUSING_API_KEYS": '["a", "b"]',
        "HOUSING_DEADLINE_SECONDS": "1.5",
        "HOUSING_MAX_INSTANCES": "7",
        "HOUSING_MAX_BODY_BYTES": "4096",
        "HOUSING_PREDICTION_LOG_PATH": "",
        "HOUSING_MODELS_DIR": str(tmp_path),
        "HOUSING_CORS_ORIGINS": '["https://a.example"]',
        "HOUSING_CANARY_PERCENT": "12.5",
        "HOUSING_HOST": "127.0.0.1",
        "HOUSING_PORT": "8123",
        "HOUSING_DRIFT_INTERVAL_SECONDS": "60",
        "HOUSING_METRICS_KEYS": '["m"]',
        "HOUSING_ALLOW_UNAUTHENTICATED": "true",
        "HOUSING_MAX_IN_FLIGHT_PREDICTIONS": "9",
        "HOUSING_MAX_QUEUED_PREDICTIONS": "0",
        "HOUSING_PREDICTION_LOG_MAX_AGE_DAYS": "7",
        "HOUSING_PREDICTION_LOG_MAX_ROWS": "1000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = GatewaySettings(_env_file=None)
    assert s.upstreams == {"housing_sklearn": "ms:8500", "housing_keras": "tfs:8500"}
    assert s.default_model == "housing_keras"
    assert s.api_key_bytes() == [b"a", b"b"]
    assert (s.deadline_seconds, s.max_instances, s.max_body_bytes) == (1.5, 7, 4096)
    assert s.prediction_log_file is None
    assert s.models_dir == tmp_path
    assert s.cors_origins == ["https://a.example"]
    assert (s.canary_percent, s.host, s.listen_port, s.drift_interval_seconds) == (
        12.5,
        "127.0.0.1",
        8123,
        60,
    )
    assert "a" not in repr(s.api_keys)  # secrets stay out of logs
    assert s.metrics_key_bytes() == [b"m"] and s.allow_unauthenticated
    assert (s.max_in_flight_predictions, s.max_queued_predictions) == (9, 0)
    assert (s.prediction_log_max_age_days, s.prediction_log_max_rows) == (7, 1000)


def test_default_bind_is_loopback_only():
    assert GatewaySettings(_env_file=None).host == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.example"])
def test_a_reachable_bind_needs_api_keys_or_the_explicit_opt_out(host):
    with pytest.raises(ValidationError, match="no API keys are set"):
        GatewaySettings(_env_file=None, host=host)
    assert GatewaySettings(_env_file=None, host=host, api_keys=["k"]).host == host
    assert GatewaySettings(_env_file=None, host=host, allow_unauthenticated=True).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_binds_need_no_keys(host):
    assert GatewaySettings(_env_file=None, host=host).host == host


def test_precedence_flags_over_env_over_dotenv_over_defaults(monkeypatch, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("HOUSING_PORT=7001\nHOUSING_MAX_INSTANCES=11\nHOUSING_CHUNK_SIZE=5\n")
    monkeypatch.setenv("HOUSING_PORT", "7002")
    monkeypatch.setenv("HOUSING_MAX_INSTANCES", "12")
    s = GatewaySettings(_env_file=dotenv, port=7003)
    assert s.port == 7003  # flag (constructor) beats env
    assert s.max_instances == 12  # env beats .env
    assert s.chunk_size == 5  # .env beats default
    assert s.deadline_seconds == 5.0  # default


@pytest.mark.parametrize(
    "overrides",
    [
        {"upstreams": {}},
        {"upstreams": {"housing_sklearn": "no-port"}},
        {"upstreams": {"../x": "h:1"}},
        {"default_model": "missing"},
        {"canary_percent": 101},
        {"port": 0},
        {"aip_predict_route": "no-slash"},
        {"max_in_flight_predictions": 0},
        {"max_queued_predictions": -1},
        {"prediction_log_max_rows": 0},
        {"prediction_log_max_age_days": 0},
    ],
)
def test_bad_settings_are_rejected(overrides):
    with pytest.raises(ValidationError):
        GatewaySettings(_env_file=None, **overrides)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["gateway", *argv])


def test_cli_flags_become_settings():
    args = parse(
        "--upstream",
        "housing_sklearn=a:1",
        "--upstream",
        "housing_keras=b:2",
        "--port",
        "9001",
        "--workers",
        "2",
        "--canary-percent",
        "10",
        "--cors-origin",
        "https://x.example",
    )
    settings, overrides = cli.load_settings(args)
    assert settings.upstreams == {"housing_sklearn": "a:1", "housing_keras": "b:2"}
    assert (settings.port, settings.workers, settings.canary_percent) == (9001, 2, 10)
    assert settings.cors_origins == ["https://x.example"]
    assert set(overrides) == {"upstreams", "port", "workers", "canary_percent", "cors_origins"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--upstream", "nonsense"],
        ["--port", "abc"],
        ["--canary-percent", "200"],
        ["--default-model", "zzz"],
    ],
)
def test_cli_bad_values_are_one_line_errors(argv):
    with pytest.raises(UserError) as info:
        cli.load_settings(parse(*argv))
    assert "\n" not in str(info.value)


def test_allow_unauthenticated_is_a_plain_flag():
    with pytest.raises(UserError, match="--allow-unauthenticated"):
        cli.load_settings(parse("--host", "0.0.0.0"))
    settings, overrides = cli.load_settings(parse("--host", "0.0.0.0", "--allow-unauthenticated"))
    assert settings.allow_unauthenticated and overrides["allow_unauthenticated"] is True


def test_an_exposed_gateway_without_keys_refuses_to_start():
    result = run_python(
        "-m", "core.cli", "serve", "gateway", "--host", "0.0.0.0",
        env={k: v for k, v in os.environ.items() if not k.startswith("HOUSING_")},
    )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "no API keys" in line and "--allow-unauthenticated" in line


def test_housing_serve_gateway_exits_2_with_one_line():
    result = run_python("-m", "core.cli", "serve", "gateway", "--upstream", "x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("housing: error: --upstream expects")


def test_help_documents_every_setting():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    text = sub.choices["gateway"].format_help()
    flags = ["--upstream", "--cors-origin", "--allow-unauthenticated"] + [
        "--" + name.replace("_", "-")
        for name in GatewaySettings.model_fields
        if name not in cli.SPECIAL
    ]
    for flag in flags:
        assert flag in text
    for name in ["--host", "--port", "--default-model", "--workers"]:
        assert name in flags


def test_training_ranges_match_the_training_split(split):
    for name, (low, high) in TRAINING_RANGES.items():
        column = split.train[name]
        assert (low, high) == (pytest.approx(column.min()), pytest.approx(column.max())), name
