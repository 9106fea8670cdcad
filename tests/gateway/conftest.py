"""Fixtures: settings -> fake gRPC upstream -> app (lifespan run) -> httpx ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from core.contract import EXAMPLE_INSTANCE
from service.gateway.app import create_app
from service.gateway.settings import GatewaySettings
from tests.fake_upstream import FakeUpstream

INSTANCE = dict(EXAMPLE_INSTANCE)


@pytest.fixture
def make_settings(upstream: FakeUpstream, tmp_path) -> Callable[..., GatewaySettings]:
    def make(**overrides) -> GatewaySettings:
        values = {
            "upstreams": {"housing_sklearn": upstream.target, "housing_keras": upstream.target},
            "prediction_log_path": str(tmp_path / "predictions.sqlite3"),
            "deadline_seconds": 2.0,
            "retry_backoff_seconds": 0.01,
            "ready_cache_seconds": 0.0,
            **overrides,
        }
        return GatewaySettings(_env_file=None, **values)

    return make


@pytest.fixture
def make_client(make_settings, behaviour):
    """``async with make_client(**settings) as client`` runs the lifespan around the client."""

    class Client:
        def __init__(self, **overrides) -> None:
            self.app = create_app(make_settings(**overrides))

        async def __aenter__(self) -> httpx.AsyncClient:
            self._lifespan = self.app.router.lifespan_context(self.app)
            await self._lifespan.__aenter__()
            self._client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app), base_url="http://gateway"
            )
            return self._client

        async def __aexit__(self, *exc) -> None:
            await self._client.aclose()
            await self._lifespan.__aexit__(*exc)

    return Client


@pytest.fixture
async def client(make_client) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c
