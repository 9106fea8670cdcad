"""A local Vertex AI API over TLS, speaking the real gRPC services the SDK's GAPIC clients call.

It records every request (decoded with the SDK's own proto types) so tests can assert on
what the SDK built, and keeps just enough state (models, endpoints, jobs) for the SDK's
follow-up reads. Batch prediction jobs "run" on the first status read: they read the
instances from the storage emulator and write Vertex-style result files back.
"""

from __future__ import annotations

import datetime
import json
import random
import re
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.cloud.aiplatform_v1 import types
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, struct_pb2

PACKAGE = "google.cloud.aiplatform.v1"


def self_signed_cert(folder: Path) -> tuple[bytes, bytes, Path]:
    """A localhost certificate: key PEM, cert PEM, and the cert's path (the trust root)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = folder / "fake-vertex-ca.pem"
    path.write_bytes(cert_pem)
    return key_pem, cert_pem, path


def done(response: Any | None = None) -> operations_pb2.Operation:
    """A finished long-running operation carrying ``response`` (Empty if None)."""
    packed = any_pb2.Any()
    packed.Pack(type(response).pb(response) if response is not None else empty_pb2.Empty())
    return operations_pb2.Operation(name="operations/fake", done=True, response=packed)


class FakeVertex:
    """State and handlers of the fake API; ``calls`` lists (method, request) in order."""

    def __init__(
        self,
        project: str,
        location: str,
        storage_client: Any,
        predict: Callable[[list[dict[str, Any]]], list[float]],
    ):
        self.parent = f"projects/{project}/locations/{location}"
        self.storage = storage_client
        self.predict_fn = predict
        self.calls: list[tuple[str, Any]] = []
        self.models: dict[str, types.Model] = {}
        """Model name -> its default version."""
        self.versions: dict[str, list[types.Model]] = {}
        self.endpoints: dict[str, types.Endpoint] = {}
        self.jobs: dict[str, Any] = {}
        self.counter = 1000

    def new_id(self) -> str:
        self.counter += 1
        return str(self.counter)

    def requests(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]

    # ---- ModelService ------------------------------------------------------------------

    def UploadModel(self, request: types.UploadModelRequest) -> Any:
        """A new registry Model, or (``parent_model``) a new version of one; an alias moves
        to the new version, and ``default`` marks the version the Model name resolves to."""
        model = types.Model(request.model)
        if request.parent_model:
            name = request.parent_model.split("@")[0]
            versions = self.versions[name]  # KeyError -> NOT_FOUND, as Vertex answers
            model.version_id = str(max(int(v.version_id) for v in versions) + 1)
            for other in versions:
                kept = [a for a in other.version_aliases if a not in model.version_aliases]
                del other.version_aliases[:]
                other.version_aliases.extend(kept)
        else:
            name = f"{self.parent}/models/{self.new_id()}"
            model.version_id = "1"
            self.versions[name] = []
            if "default" not in model.version_aliases:
                model.version_aliases.append("default")
        model.name = name
        model.create_time = datetime.datetime.now(datetime.UTC)
        # What Vertex reports for models served from a container.
        model.supported_deployment_resources_types = [
            types.Model.DeploymentResourcesType.DEDICATED_RESOURCES
        ]
        self.versions[name].append(model)
        self.models[name] = next(
            v for v in reversed(self.versions[name]) if "default" in v.version_aliases
        )
        return done(types.UploadModelResponse(model=name, model_version_id=model.version_id))

    def GetModel(self, request: types.GetModelRequest) -> Any:
        name, _, version = request.name.partition("@")
        if version:
            found = [
                v
                for v in self.versions[name]
                if v.version_id == version or version in v.version_aliases
            ]
            if found:
                return types.Model.pb(found[0])
        return types.Model.pb(self.models[name])

    def ListModels(self, request: types.ListModelsRequest) -> Any:
        """The default version of each Model; ``display_name="X"`` filters are understood."""
        wanted = re.fullmatch(r'display_name="([^"]*)"', request.filter or "")
        models = [m for m in self.models.values() if wanted is None or m.display_name == wanted[1]]
        return types.ListModelsResponse.pb(types.ListModelsResponse(models=models))

    def DeleteModel(self, request: types.DeleteModelRequest) -> Any:
        del self.models[request.name]
        del self.versions[request.name]
        return done()

    # ---- EndpointService ---------------------------------------------------------------

    def CreateEndpoint(self, request: types.CreateEndpointRequest) -> Any:
        endpoint = types.Endpoint(request.endpoint)
        endpoint.name = f"{self.parent}/endpoints/{self.new_id()}"
        endpoint.create_time = datetime.datetime.now(datetime.UTC)
        self.endpoints[endpoint.name] = endpoint
        return done(endpoint)

    def GetEndpoint(self, request: types.GetEndpointRequest) -> Any:
        return types.Endpoint.pb(self.endpoints[request.name])

    def DeployModel(self, request: types.DeployModelRequest) -> Any:
        endpoint = self.endpoints[request.endpoint]
        deployed = types.DeployedModel(request.deployed_model)
        deployed.id = self.new_id()
        endpoint.deployed_models.append(deployed)
        split = dict(request.traffic_split)
        if "0" in split:
            split[deployed.id] = split.pop("0")
        endpoint.traffic_split.clear()
        endpoint.traffic_split.update(split)
        return done(types.DeployModelResponse(deployed_model=deployed))

    def UndeployModel(self, request: types.UndeployModelRequest) -> Any:
        endpoint = self.endpoints[request.endpoint]
        kept = [d for d in endpoint.deployed_models if d.id != request.deployed_model_id]
        del endpoint.deployed_models[:]
        endpoint.deployed_models.extend(kept)
        endpoint.traffic_split.clear()
        endpoint.traffic_split.update(dict(request.traffic_split))
        return done(types.UndeployModelResponse())

    def DeleteEndpoint(self, request: types.DeleteEndpointRequest) -> Any:
        del self.endpoints[request.name]
        return done()

    # ---- PredictionService -------------------------------------------------------------

    def Predict(self, request: types.PredictRequest) -> Any:
        endpoint = self.endpoints[request.endpoint]
        instances = [json.loads(json.dumps(dict(i))) for i in _values(request)]
        response = types.PredictResponse.pb(
            types.PredictResponse(
                deployed_model_id=endpoint.deployed_models[0].id,
                model=endpoint.deployed_models[0].model,
            )
        )
        for value in self.predict_fn(instances):
            struct = response.predictions.add().struct_value
            struct.update({"median_house_value": value})
        return response

    # ---- JobService ----------------------------------------------------------------------

    def _create(self, kind: str, job: Any) -> Any:
        job.name = f"{self.parent}/{kind}/{self.new_id()}"
        job.state = types.JobState.JOB_STATE_PENDING
        job.create_time = datetime.datetime.now(datetime.UTC)
        self.jobs[job.name] = job
        return type(job).pb(job)

    def _get(self, name: str) -> Any:
        job = self.jobs[name]
        job.state = types.JobState.JOB_STATE_SUCCEEDED
        return type(job).pb(job)

    def CreateCustomJob(self, request: types.CreateCustomJobRequest) -> Any:
        return self._create("customJobs", types.CustomJob(request.custom_job))

    def GetCustomJob(self, request: types.GetCustomJobRequest) -> Any:
        return self._get(request.name)

    def DeleteCustomJob(self, request: types.DeleteCustomJobRequest) -> Any:
        del self.jobs[request.name]
        return done()

    def CreateHyperparameterTuningJob(
        self, request: types.CreateHyperparameterTuningJobRequest
    ) -> Any:
        job = types.HyperparameterTuningJob(request.hyperparameter_tuning_job)
        for trial_id, value in (("1", 61000.0), ("2", 48500.5)):
            job.trials.append(
                types.Trial(
                    id=trial_id,
                    state=types.Trial.State.SUCCEEDED,
                    parameters=[
                        types.Trial.Parameter(
                            parameter_id="n_hidden", value=struct_pb2.Value(number_value=3)
                        )
                    ],
                    final_measurement=types.Measurement(
                        metrics=[types.Measurement.Metric(metric_id="val_rmse", value=value)]
                    ),
                )
            )
        return self._create("hyperparameterTuningJobs", job)

    def GetHyperparameterTuningJob(self, request: Any) -> Any:
        return self._get(request.name)

    def DeleteHyperparameterTuningJob(self, request: Any) -> Any:
        del self.jobs[request.name]
        return done()

    def CreateBatchPredictionJob(self, request: types.CreateBatchPredictionJobRequest) -> Any:
        return self._create(
            "batchPredictionJobs", types.BatchPredictionJob(request.batch_prediction_job)
        )

    def GetBatchPredictionJob(self, request: types.GetBatchPredictionJobRequest) -> Any:
        job = self.jobs[request.name]
        if job.state != types.JobState.JOB_STATE_SUCCEEDED:
            self._run_batch(job)
        return self._get(request.name)

    def DeleteBatchPredictionJob(self, request: Any) -> Any:
        del self.jobs[request.name]
        return done()

    def _run_batch(self, job: types.BatchPredictionJob) -> None:
        """Do what Vertex's workers do: read instances, write shuffled result shards."""
        (source,) = job.input_config.gcs_source.uris
        bucket, _, name = source.removeprefix("gs://").partition("/")
        lines = self.storage.bucket(bucket).blob(name).download_as_text().splitlines()
        instances = [json.loads(line) for line in lines if line.strip()]
        values = self.predict_fn(instances)
        records = [
            json.dumps({"instance": i, "prediction": {"median_house_value": v}})
            for i, v in zip(instances, values, strict=True)
        ]
        random.Random(0).shuffle(records)
        prefix = job.output_config.gcs_destination.output_uri_prefix
        out_dir = f"{prefix}/prediction-fake-{self.new_id()}"
        out_bucket, _, out_path = out_dir.removeprefix("gs://").partition("/")
        half = len(records) // 2
        for index, shard in enumerate((records[:half], records[half:])):
            self.storage.bucket(out_bucket).blob(
                f"{out_path}/prediction.results-0000{index}-of-00002"
            ).upload_from_string("".join(r + "\n" for r in shard))
        self.storage.bucket(out_bucket).blob(
            f"{out_path}/prediction.errors_stats-00000-of-00001"
        ).upload_from_string("")
        job.output_info.gcs_output_directory = out_dir


def _values(request: types.PredictRequest) -> list[Any]:
    return list(request.instances)


SERVICES = {
    "ModelService": ("UploadModel", "GetModel", "ListModels", "DeleteModel"),
    "EndpointService": (
        "CreateEndpoint",
        "GetEndpoint",
        "DeployModel",
        "UndeployModel",
        "DeleteEndpoint",
    ),
    "PredictionService": ("Predict",),
    "JobService": (
        "CreateCustomJob",
        "GetCustomJob",
        "DeleteCustomJob",
        "CreateHyperparameterTuningJob",
        "GetHyperparameterTuningJob",
        "DeleteHyperparameterTuningJob",
        "CreateBatchPredictionJob",
        "GetBatchPredictionJob",
        "DeleteBatchPredictionJob",
    ),
}


def request_type(method: str) -> Any:
    return getattr(types, f"{method}Request")


def serve(fake: FakeVertex, key_pem: bytes, cert_pem: bytes) -> tuple[grpc.Server, int]:
    """Start a TLS gRPC server on a free loopback port exposing the fake's services."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    for service, methods in SERVICES.items():
        handlers = {}
        for method in methods:

            def call(request: Any, context: Any, method: str = method) -> Any:
                fake.calls.append((method, request))
                try:
                    return getattr(fake, method)(request)
                except KeyError as missing:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"{missing} not found")

            handlers[method] = grpc.unary_unary_rpc_method_handler(
                call,
                request_deserializer=request_type(method).deserialize,
                response_serializer=lambda message: message.SerializeToString(),
            )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(f"{PACKAGE}.{service}", handlers),)
        )
    port = server.add_secure_port("localhost:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    server.start()
    return server, port
