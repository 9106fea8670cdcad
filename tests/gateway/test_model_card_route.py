"""``GET /v1/models/{name}/card``: the served version's card, behind the API key when set."""

from __future__ import annotations

import pytest

from load_tests.models import publish_sklearn, small_sklearn
from training.repository import CARD_DIR, ModelRepository


@pytest.fixture
def models(split, tmp_path):
    """Two housing_sklearn versions; only version 1 has a card (written by hand: the route
    serves files, the card's content is tests/model_card's business)."""
    repository = ModelRepository(tmp_path / "models")
    model = small_sklearn(split.train, rows=300, trees=2)
    for _ in range(2):
        publish_sklearn(repository, model)
    folder = repository.version_dir("housing_sklearn", 1) / CARD_DIR
    folder.mkdir()
    (folder / "card.html").write_text("<html>card of version 1</html>")
    (folder / "card.md").write_text("# Model card: housing_sklearn version 1\n")
    (folder / "card.json").write_text('{"version": 1}\n')
    return repository


async def test_card_of_the_stable_version_in_each_format(make_client, models):
    models.set_label("housing_sklearn", "stable", 1)
    async with make_client(models_dir=models.root) as client:
        html = await client.get("/v1/models/housing_sklearn/card")
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert html.headers["x-model-version"] == "1"
        assert html.text == "<html>card of version 1</html>"
        md = await client.get("/v1/models/housing_sklearn/card", params={"format": "md"})
        assert md.headers["content-type"].startswith("text/markdown")
        assert md.text.startswith("# Model card: housing_sklearn version 1")
        js = await client.get("/v1/models/housing_sklearn/card", params={"format": "json"})
        assert js.json() == {"version": 1}


async def test_missing_card_unknown_model_and_bad_query_are_4xx(make_client, models):
    # No label: the served version is the latest (2), which has no card yet.
    async with make_client(models_dir=models.root) as client:
        missing = await client.get("/v1/models/housing_sklearn/card")
        assert missing.status_code == 404
        assert "housing model-card housing_sklearn:2" in missing.json()["detail"]
        assert (await client.get("/v1/models/housing_sklearn/card?version=1")).status_code == 200
        nine = await client.get("/v1/models/housing_sklearn/card?version=9")
        assert nine.status_code == 404 and "no version 9" in nine.json()["detail"]
        unknown = await client.get("/v1/models/..%2F..%2Fetc/card")
        assert unknown.status_code == 404
        bad = await client.get("/v1/models/housing_sklearn/card?format=pdf")
        assert bad.status_code == 422 and "format" in bad.text
        negative = await client.get("/v1/models/housing_sklearn/card?version=-1")
        assert negative.status_code == 422 and "version" in negative.text


async def test_card_needs_the_key_when_auth_is_on(make_client, models):
    async with make_client(models_dir=models.root, api_keys=["s3cret-key"]) as client:
        path = "/v1/models/housing_sklearn/card?version=1"
        assert (await client.get(path)).status_code == 401
        ok = await client.get(path, headers={"X-API-Key": "s3cret-key"})
        assert ok.status_code == 200
