"""docker-compose.yml follows the service table of deploy/local/services.py, and is well formed.

There is no Docker engine here (and no compose plugin), so the compose file is checked
structurally; where ``docker compose`` works, ``docker compose config -q`` runs too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.cli import build_parser
from core.paths import REPO_ROOT
from deploy.local.services import COMPOSE, LOCUST_IMAGE, PROMETHEUS_IMAGE, SERVICES
from deploy.tfserving.runtime import TF_SERVING_GPU_IMAGE, TF_SERVING_IMAGE, TF_SERVING_PLATFORM

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# Settings only the docker stack needs: its gateway listens on 0.0.0.0 inside a container.
COMPOSE_ONLY_ENVIRONMENT = {"gateway": ("HOUSING_API_KEYS", "HOUSING_ALLOW_UNAUTHENTICATED")}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def with_defaults(value: Any) -> Any:
    """Compose interpolation with an empty environment: ``${VAR:-default}`` -> default."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [with_defaults(item) for item in value]
    if isinstance(value, dict):
        return {key: with_defaults(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return with_defaults(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def container_ports(service: dict[str, Any]) -> dict[int, int]:
    """container port -> published host port."""
    result = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        result[int(container)] = int(host.rpartition(":")[2])
    return result


def open_ports(service: dict[str, Any]) -> set[int]:
    """Container ports other services can reach: published or only exposed."""
    return set(container_ports(service)) | {int(port) for port in service.get("expose", [])}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (bind path or volume name)."""
    result = {}
    for entry in service.get("volumes", []):
        source, target, *_ = str(entry).split(":")
        result[target] = source
    return result


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_matches_the_table(services: dict[str, Any], name: str) -> None:
    spec = SERVICES[name]
    service = services[name]
    command = COMPOSE.command(spec)
    if spec.program == "housing":
        assert "build" in service, f"{name} is built from the project's Dockerfile"
        assert service["command"] == command
    else:
        # Third-party images: the program is the entrypoint, or the image's default one.
        assert service.get("entrypoint", [spec.program]) == [spec.program]
        assert service["command"] == command
    environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    for key in COMPOSE_ONLY_ENVIRONMENT.get(name, ()):
        environment.pop(key)
    assert environment == COMPOSE.environment(spec)
    assert open_ports(service) == set(spec.ports.values())


def test_gateway_routes_keras_to_tfserving_and_sklearn_to_the_model_server(
    services: dict[str, Any],
) -> None:
    command = services["gateway"]["command"]
    assert "--upstream=housing_keras=tfserving:8500" in command
    assert "--upstream=housing_sklearn=model-server:8500" in command


def test_model_config_paths(services: dict[str, Any]) -> None:
    models = COMPOSE.models
    assert f"--model_config_file={models}/tfserving.config" in services["tfserving"]["command"]
    assert f"--model_config_file={models}/models.config" in services["model-server"]["command"]
    for name in ("trainer", "tfserving", "model-server", "gateway"):
        assert mounts(services[name])[models] == "./models", name
    assert mounts(services["trainer"])[models] == "./models"
    assert not str(services["trainer"]["volumes"][0]).endswith(":ro"), "the trainer writes"
    for name in ("tfserving", "model-server"):
        assert mounts(services[name])[COMPOSE.tfserving_conf] == "./deploy/tfserving"
    prometheus_dir = str(Path(COMPOSE.prometheus_config).parent)
    assert mounts(services["prometheus"])[prometheus_dir] == "./deploy/prometheus"


def test_tfserving_flags(services: dict[str, Any]) -> None:
    flags = services["tfserving"]["command"]
    for flag in ("--enable_batching", "--rest_api_port=8501", "--port=8500"):
        assert flag in flags
    assert any(f.startswith("--model_config_file_poll_wait_seconds=") for f in flags)
    assert any(f.startswith("--batching_parameters_file=") for f in flags)
    assert any(f.startswith("--monitoring_config_file=") for f in flags)


def test_pinned_images(services: dict[str, Any]) -> None:
    assert services["tfserving"]["image"] == TF_SERVING_IMAGE
    assert services["tfserving-gpu"]["image"] == TF_SERVING_GPU_IMAGE
    # Only amd64 images exist: Apple-silicon hosts must ask for them (emulated).
    for name in ("tfserving", "tfserving-gpu"):
        assert services[name]["platform"] == TF_SERVING_PLATFORM, name
    assert services["prometheus"]["image"] == PROMETHEUS_IMAGE
    assert services["load"]["image"] == LOCUST_IMAGE
    for name, service in services.items():
        if "image" in service and "build" not in service:
            tag = service["image"].rpartition(":")[2]
            assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{name} image not pinned: {tag}"


def test_gpu_profile(services: dict[str, Any]) -> None:
    gpu = services["tfserving-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["command"] == services["tfserving"]["command"]
    assert "healthcheck" in gpu


def test_load_profile(services: dict[str, Any]) -> None:
    load = services["load"]
    assert load["profiles"] == ["load"]
    command = load["command"]
    assert command[command.index("-f") + 1] == "load_tests/locustfile.py"
    assert "--headless" in command and "--host=http://gateway:8000" in command
    assert load["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_health_checks_and_start_order(services: dict[str, Any]) -> None:
    for name, spec in SERVICES.items():
        if spec.health is None:
            continue
        role, path = spec.health[0], COMPOSE.health_path(spec)
        check = " ".join(services[name]["healthcheck"]["test"])
        assert path in check and str(spec.ports[role]) in check, name
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule["condition"] in CONDITIONS
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    # Each model's availability is independent: the gateway waits for the models to exist,
    # not for both servers to be healthy (its own health check accepts any AVAILABLE model).
    assert services["gateway"]["depends_on"] == {
        "trainer": {"condition": "service_completed_successfully"},
        "tfserving": {"condition": "service_started"},
        "model-server": {"condition": "service_started"},
    }
    for name in ("tfserving", "model-server"):
        rule = services[name]["depends_on"]["trainer"]
        assert rule == {"condition": "service_completed_successfully"}
    assert services["trainer"]["restart"] == "no"


def test_structure(compose: dict[str, Any], services: dict[str, Any]) -> None:
    published = [p for s in services.values() for p in container_ports(s).values()]
    assert len(published) == len(set(published)), "two services publish the same host port"
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert ("image" in service) or ("build" in service), name
        if "build" in service:
            assert (REPO_ROOT / service["build"]["dockerfile"]).is_file(), name
        assert isinstance(service.get("profiles", []), list)
        for target, source in mounts(service).items():
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith("./"):
                # ./models and ./runs are created on first use; Prometheus' own test below.
                if source.split("/")[1] not in {"models", "runs"} and "prometheus" not in source:
                    assert (REPO_ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_prometheus_config_scrapes_the_stack(services: dict[str, Any]) -> None:
    config_dir = REPO_ROOT / "deploy" / "prometheus"
    config_file = config_dir / "prometheus.yml"
    if not config_file.is_file():
        pytest.skip("deploy/prometheus/prometheus.yml not written yet")
    config = yaml.safe_load(config_file.read_text())
    for rule_file in config.get("rule_files", []):
        relative = (
            Path(rule_file).relative_to("/etc/prometheus")
            if rule_file.startswith("/")
            else rule_file
        )
        assert (config_dir / relative).is_file(), rule_file
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    for target in targets:
        host, _, port = target.rpartition(":")
        if host in services:
            assert int(port) in open_ports(services[host]), target
    scraped = {target.rpartition(":")[0] for target in targets}
    assert {"gateway", "model-server", "tfserving"} <= scraped


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (checked structurally above)")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.program == "housing"))
def test_project_commands_parse_with_the_real_cli(name: str) -> None:
    """Every compose command of the project's images is accepted by ``housing`` itself."""
    args = build_parser().parse_args(COMPOSE.command(SERVICES[name]))
    assert callable(args.func)


def test_the_model_server_accepts_tf_servings_flags() -> None:
    """The same flags start either server: TF Serving's compose command parses as ours."""
    tfserving = COMPOSE.command(SERVICES["tfserving"])
    args = build_parser().parse_args(["serve", "model-server", *tfserving])
    assert args.enable_batching is True
    assert str(args.model_config_file) == f"{COMPOSE.models}/tfserving.config"


MODEL_SERVERS = ("tfserving", "tfserving-gpu", "model-server")


def test_gateway_can_start_on_0000_and_is_published_on_loopback_only(
    services: dict[str, Any],
) -> None:
    """The gateway refuses a non-loopback bind without API keys or the opt-out: compose
    passes the opt-out and therefore publishes port 8000 on the host's loopback only."""
    from service.gateway.settings import GatewaySettings

    gateway = services["gateway"]
    args = build_parser().parse_args(gateway["command"])
    environment = {k: str(v) for k, v in gateway["environment"].items()}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        settings = GatewaySettings(host=args.host)
    assert settings.host == "0.0.0.0" and settings.allow_unauthenticated
    assert gateway["ports"] == ["127.0.0.1:8000:8000"]
    with pytest.raises(ValueError, match="no API keys"):
        GatewaySettings(host="0.0.0.0", allow_unauthenticated=False, api_keys=[])


def test_model_servers_are_only_on_the_internal_network(compose: dict[str, Any]) -> None:
    """No label/reload surface on 0.0.0.0: the model servers publish nothing by default."""
    services = compose["services"]
    assert compose["networks"]["backend"] == {"internal": True}
    for name in MODEL_SERVERS:
        assert "ports" not in services[name], name
        assert services[name]["networks"] == ["backend"], name
    for name in ("gateway", "prometheus"):
        assert set(services[name]["networks"]) == {"backend", "frontend"}, name
    override = yaml.safe_load((REPO_ROOT / "docker" / "publish-model-servers.yml").read_text())
    for name, service in override["services"].items():
        assert name in services and "frontend" in service["networks"]
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), name
        assert {int(str(p).rpartition(":")[2]) for p in service["ports"]} == open_ports(
            services[name]
        )


def entry_flags(argv: list[str], flag: str) -> list[str]:
    """Values of ``--flag VALUE`` / ``--flag=VALUE`` before the ``--`` of an entrypoint."""
    head = argv[: argv.index("--")]
    values = [head[i + 1] for i, arg in enumerate(head) if arg == flag]
    return values + [arg.split("=", 1)[1] for arg in head if arg.startswith(f"{flag}=")]


def dockerfile_entrypoint(dockerfile: str) -> list[str]:
    text = (REPO_ROOT / dockerfile).read_text().replace("\\\n", " ")
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    assert match, dockerfile
    return yaml.safe_load(match[1])


def test_fresh_clone_needs_no_variables_and_no_folders() -> None:
    """Every ${VAR} has a default, and each service that writes into a bind-mounted host
    folder (which Docker creates root-owned) starts as root in docker/entrypoint.py, which
    hands that folder to the checkout's owner and drops root."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    text = COMPOSE_FILE.read_text()
    for match in VARIABLE.finditer(text):
        assert match.group(2) is not None, f"${{{match.group(1)}}} has no default"
    services = raw["services"]
    entrypoints = {
        "trainer": dockerfile_entrypoint(services["trainer"]["build"]["dockerfile"]),
        "load": services["load"]["entrypoint"],
    }
    for name, service in services.items():
        writable = [
            str(v).split(":")[1]
            for v in service.get("volumes", [])
            if str(v).startswith("./") and not str(v).endswith(":ro")
        ]
        if not writable:
            continue
        assert name in entrypoints, f"{name} writes into a host folder without the entrypoint"
        argv = entrypoints[name]
        assert any(arg.endswith("docker/entrypoint.py") for arg in argv[:2]), name
        assert sorted(entry_flags(argv, "--writable")) == sorted(writable), name
        assert str(service["user"]) == "0:0", f"{name} must start as root to fix ownership"
        (owner_of,) = entry_flags(argv, "--owner-of")
        assert mounts(service)[owner_of] == "./docker", f"{name}: the checkout reference"
    load_script = entrypoints["load"][1]
    assert mounts(services["load"])[str(Path(load_script).parent)] == "./docker"


READINESS = {
    "both up": (200, {"housing_keras": "AVAILABLE", "housing_sklearn": "AVAILABLE"}, 0),
    "keras down": (503, {"housing_keras": "NOT_FOUND", "housing_sklearn": "AVAILABLE"}, 0),
    "none up": (503, {"housing_keras": "UNAVAILABLE", "housing_sklearn": "no versions"}, 1),
}


@pytest.mark.parametrize("case", sorted(READINESS))
def test_gateway_health_check_passes_while_any_model_is_available(
    services: dict[str, Any], case: str
) -> None:
    """The compose health check itself, run against a real HTTP server answering /readyz."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    status, models, expected = READINESS[case]

    class Readyz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps({"ready": status == 200, "models": models}).encode()
            self.send_response(status if self.path == "/readyz" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        program, flag, code = services["gateway"]["healthcheck"]["test"][1:]
        assert (program, flag) == ("python", "-c")
        code = code.replace("127.0.0.1:8000", f"127.0.0.1:{server.server_port}")
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == expected, result.stderr
