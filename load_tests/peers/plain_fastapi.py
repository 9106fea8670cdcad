"""The baseline a user would write first: FastAPI + uvicorn workers calling ``predict``.

    HOUSING_PEER_MODEL=.../model.joblib uvicorn load_tests.peers.plain_fastapi:app --workers 2

Same request and response shape as the gateway (``{"instances": [...]}`` in,
``{"predictions": [{"median_house_value": ...}]}`` out), no batching, no gRPC hop.
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import pandas as pd
from fastapi import Body, FastAPI

from core.contract import FEATURES, OUTPUT_NAME

app = FastAPI(title="plain FastAPI peer")
model = joblib.load(os.environ["HOUSING_PEER_MODEL"])


@app.post("/v1/predict")
def predict(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Sync route: uvicorn runs it in its threadpool, as most tutorials do."""
    frame = pd.DataFrame(payload["instances"], columns=list(FEATURES))
    values = model.predict(frame)
    return {"predictions": [{OUTPUT_NAME: float(v)} for v in values]}
