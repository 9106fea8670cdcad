"""A gateway worker does not import TensorFlow: the protocol comes from core.tfserving_protos."""

from __future__ import annotations

import json

from core.contract import EXAMPLE_INSTANCE
from tests.commands import run_python
from tests.fake_upstream import FakeUpstream

SERVE_ONE_REQUEST = """
import asyncio, json, sys
import httpx
from service.gateway.app import create_app
from service.gateway.settings import GatewaySettings

async def main():
    target, log, instance = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    settings = GatewaySettings(
        _env_file=None,
        upstreams={"housing_sklearn": target, "housing_keras": target},
        prediction_log_path=log,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post("/v1/predict", json={"instances": [instance]})
    roots = ("tensorflow", "tensorflow_serving")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in roots)
    print(json.dumps({"status": answer.status_code, "body": answer.json(), "tf": loaded}))

asyncio.run(main())
"""


def test_serving_a_request_does_not_import_tensorflow(tmp_path) -> None:
    upstream = FakeUpstream().start()
    upstream.servicer.reset()
    try:
        result = run_python(
            "-c",
            SERVE_ONE_REQUEST,
            upstream.target,
            str(tmp_path / "log.sqlite3"),
            json.dumps(EXAMPLE_INSTANCE),
        )
    finally:
        upstream.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    assert report["body"]["model"] == {"name": "housing_sklearn", "version": 2}
    assert report["tf"] == []
