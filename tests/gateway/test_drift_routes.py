"""The gateway's drift monitor: gauges for every routed model from start-up, key required."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


async def test_drift_gauges_exist_for_every_routed_model_from_start_up(make_client):
    async with make_client() as client:
        text = (await client.get("/metrics")).text
    models = {
        sample.labels["model"]
        for family in text_string_to_metric_families(text)
        if family.name == "housing_drift_dataset_drift"
        for sample in family.samples
    }
    assert models == {"housing_sklearn", "housing_keras"}


async def test_drift_runs_need_the_key_when_auth_is_on(make_client, tmp_path):
    async with make_client(api_keys=["s3cret-key"], models_dir=tmp_path) as client:
        assert (await client.post("/v1/monitoring/drift:run")).status_code == 401
        assert (await client.get("/v1/monitoring/drift/history")).status_code == 401
        keyed = await client.post(
            "/v1/monitoring/drift:run", headers={"Authorization": "Bearer s3cret-key"}
        )
        assert keyed.status_code == 503  # authorised; no traffic logged yet
        assert "no predictions of model housing_sklearn" in keyed.json()["detail"]
