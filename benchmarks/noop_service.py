"""The benchmark service: the production service plus ``predict_noop``, its baseline.

``predict_noop`` parses and validates like ``predict`` (same size limits on the raw JSON, same
candle rules) and answers without features or a model (``probability_up`` is always 0.5), so
``benchmarks/bench_service.py`` can measure how close ``predict`` comes to the cost of the
request path alone. Served as ``bentoml serve benchmarks.noop_service:svc``; the production
service (``service:svc``) and the bento have no such API.
"""

from __future__ import annotations

import bentoml

from service import limits, parse_predict_sized, served, settings, svc
from serving import schemas
from serving.io import ValidatedJSON
from serving.middleware import ApiMiddleware
from serving.windows import format_epoch_us, request_windows

svc.add_asgi_middleware(
    ApiMiddleware, paths=("/predict_noop",), max_body_bytes=settings.max_body_bytes
)


@svc.api(
    input=ValidatedJSON(pydantic_model=schemas.PredictRequest, parse=parse_predict_sized),
    output=bentoml.io.JSON(pydantic_model=schemas.PredictResponse),
)
async def predict_noop(request: schemas.Window | schemas.WindowBatch) -> dict:
    """``predict``'s parsing and validation, no features, no model."""
    noop_predictions = [
        {
            "probability_up": 0.5,
            "signal": "flat",
            "model_tag": served.tag,
            "timestamp": format_epoch_us(w.last_timestamp_us),
            "horizon_bars": served.label_horizon,
        }
        for w in request_windows(request, **limits)
    ]
    if isinstance(request, schemas.WindowBatch):
        return {"predictions": noop_predictions}
    return noop_predictions[0]


__all__ = ["svc"]
