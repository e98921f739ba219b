"""Request and response schemas (pydantic); ``/docs.json`` is generated from them.

Only JSON-level rules live here (required fields, types, finite numbers). The candle rules
(positive prices, ``high >= low``, hourly and strictly increasing timestamps...) are
``features.candles.validate_candles``'s, applied in :mod:`serving.windows`, so a rule is
written once. Bounds are ``ge``/``le`` only: ``gt``/``lt`` become ``exclusiveMinimum`` numbers,
which are not valid OpenAPI 3.0 (see shared/API_CONTRACT.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

EPOCH_MS_MAX = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in epoch milliseconds: the largest timestamp accepted."""

Price = Annotated[
    float,
    Field(strict=True, allow_inf_nan=False, description="Quote currency (USDT); must be > 0."),
]


class Candle(BaseModel):
    """One hourly candle; ``timestamp`` is its open time."""

    timestamp: str | int = Field(
        description=(
            "Open time: ISO 8601 with an explicit UTC offset ('2021-11-10T14:00:00Z', "
            "'+00:00') or epoch milliseconds (integer). Naive timestamps are rejected."
        ),
    )
    open: Price
    high: Price
    low: Price
    close: Price
    volume: float = Field(
        strict=True, allow_inf_nan=False, description="Base-asset volume (BTC); must be >= 0."
    )

    @field_validator("timestamp", mode="plain", json_schema_input_type=str | int)
    @classmethod
    def _timestamp_type(cls, value: Any) -> str | int:
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
        if isinstance(value, float) and value.is_integer():  # gRPC json Values are doubles
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= EPOCH_MS_MAX:
            return value
        raise ValueError(
            "must be an ISO 8601 string with a UTC offset or non-negative integer epoch "
            f"milliseconds, got {value!r:.40}"
        )


Candles = Annotated[
    list[Candle],
    Field(
        description=(
            "Oldest first, strictly increasing, exactly one hour apart; at least warmup_bars + 1 "
            "(241) candles and at most BTC_SERVE_MAX_CANDLES (default 2048)."
        )
    ),
]


class Window(BaseModel):
    """One window of candles; predictions and indicators are for its last candle."""

    candles: Candles


class WindowBatch(BaseModel):
    """Several windows in one request (each may have its own length)."""

    windows: list[Window] = Field(
        description="At most BTC_SERVE_MAX_WINDOWS (default 64) windows; answered in order."
    )


class PredictWindow(Window):
    """One window to predict on, with the position the client holds now (optional)."""

    position: Literal["flat", "long", "short"] = Field(
        default="flat",
        description=(
            "The client's current position; the answer's signal is the target position after "
            "the model's decision policy. 'short' only where the policy allows it (model_info: "
            "policy.positions)."
        ),
    )
    bars_held: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Bars the position has been held, the last candle included; the next request's "
            "value is bars_held + 1 if the signal kept the position, else 1. Absent: held long "
            "enough for the policy's min_hold_bars."
        ),
    )


class PredictBatch(WindowBatch):
    """Several windows to predict on, each with its own position."""

    windows: list[PredictWindow] = Field(
        description="At most BTC_SERVE_MAX_WINDOWS (default 64) windows; answered in order."
    )


class PredictRequest(RootModel[PredictWindow | PredictBatch]):
    """``{"candles": [...], "position": "flat"}`` for one window, or
    ``{"windows": [{"candles": [...], "position": "long"}, ...]}``."""


class IndicatorsRequest(Window):
    """One window; ``all_rows`` adds the values of every warmed-up candle."""

    all_rows: bool = Field(
        default=False,
        description="Also return every warmed-up row (candles after the first warmup_bars).",
    )


class ModelInfoRequest(BaseModel):
    """No fields: send ``{}`` (or an empty body)."""

    model_config = ConfigDict(extra="forbid")


class Prediction(BaseModel):
    """The answer for one window."""

    probability_up: float = Field(
        ge=0.0, le=1.0, description="P(the close label_horizon bars later is above this close)."
    )
    signal: Literal["long", "flat", "short"] = Field(
        description=(
            "The target position after the model's decision policy, given the request's "
            "position (model_info: policy); 'short' only where the policy allows it."
        )
    )
    model_tag: str = Field(description="The model that answered (name:version).")
    timestamp: str = Field(
        description="Open time of the last input candle; the prediction is made at its close."
    )
    horizon_bars: int = Field(ge=1, description="Bars ahead the prediction is about.")


class BatchPrediction(BaseModel):
    """The answers for a batch request, in request order."""

    predictions: list[Prediction]


class PredictResponse(RootModel[Prediction | BatchPrediction]):
    """One :class:`Prediction`, or ``{"predictions": [...]}`` for a batch request."""


class IndicatorRow(BaseModel):
    """Feature values of one candle."""

    timestamp: str
    values: dict[str, float]


class IndicatorsResponse(BaseModel):
    """Feature values for the last candle (names and order of the model's feature contract)."""

    timestamp: str = Field(description="Open time of the last input candle.")
    values: dict[str, float]
    model_tag: str
    rows: list[IndicatorRow] = Field(
        default_factory=list,
        description="Every warmed-up candle, oldest first (present only with all_rows).",
    )


class ModelInfoResponse(BaseModel):
    """What is being served: tag, stage, metrics, feature contract, data ranges."""

    model_tag: str
    stage: str
    labels: dict[str, str]
    feature_names: list[str]
    warmup_bars: int
    label_horizon: int
    threshold: float
    policy: dict[str, Any] = Field(
        description=(
            "The decision policy behind signal: entry, exit, min_hold_bars, allow_short "
            "(short_entry, short_exit), rule, source, positions."
        )
    )
    train_range: list[str]
    holdout_range: list[str]
    data_sha256: str
    metrics: dict[str, Any]


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer."""

    error: str = Field(description="What was wrong: the field (and row) and the rule broken.")
