"""Request and response schemas (pydantic); ``/docs.json`` is generated from them.

Only JSON-level rules live here (required fields, types, finite numbers). The candle rules
(positive prices, ``high >= low``, hourly and strictly increasing timestamps...) are
``features.candles.validate_candles``'s, applied in :mod:`serving.windows`, so a rule is
written once. Bounds are ``ge``/``le`` only: ``gt``/``lt`` become ``exclusiveMinimum`` numbers,
which are not valid OpenAPI 3.0 (see docs/API_CONTRACT.md, "Notes").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    RootModel,
    Tag,
    model_validator,
)

EPOCH_MS_MAX = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in epoch milliseconds: the largest timestamp accepted."""

Price = Annotated[
    float,
    Field(strict=True, allow_inf_nan=False, description="Quote currency (USDT); must be > 0."),
]


def _timestamp_value(value: Any) -> str | int:
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


Timestamp = Annotated[
    str | int,
    PlainValidator(_timestamp_value, json_schema_input_type=str | int),
    Field(
        description=(
            "Open time: ISO 8601 with an explicit UTC offset ('2021-11-10T14:00:00Z', "
            "'+00:00') or epoch milliseconds (integer). Naive timestamps are rejected."
        ),
    ),
]
Volume = Annotated[
    float,
    Field(strict=True, allow_inf_nan=False, description="Base-asset volume (BTC); must be >= 0."),
]


class Candle(BaseModel):
    """One hourly candle; ``timestamp`` is its open time."""

    timestamp: Timestamp
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume


class CandleColumns(BaseModel):
    """A window in columnar form: one array per field, equal lengths, row ``i`` of every array
    is candle ``i`` (what ``DataFrame.to_dict("list")`` gives). Same rules as the row form."""

    timestamp: list[Timestamp]
    open: list[Price]
    high: list[Price]
    low: list[Price]
    close: list[Price]
    volume: list[Volume]

    @model_validator(mode="after")
    def _equal_lengths(self) -> CandleColumns:
        lengths = {name: len(getattr(self, name)) for name in CANDLE_FIELDS}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
            raise ValueError(f"all columns must have the same length, got {shown}")
        return self


CANDLE_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")
ROW_FORM, COLUMN_FORM = "row form", "column form"
"""Tags of the two window forms (they appear in pydantic error locations; see
``serving.windows.validation_message``)."""


def _window_form(value: Any) -> str:
    return COLUMN_FORM if isinstance(value, dict | CandleColumns) else ROW_FORM


CANDLES_DESCRIPTION = (
    "Oldest first, strictly increasing, exactly one hour apart; at least warmup_bars + 1 "
    "(241) candles and at most BTC_SERVE_MAX_CANDLES (default 2048). Either a list of candle "
    "objects (row form) or an object of equal-length arrays (column form)."
)
Candles = Annotated[
    Annotated[list[Candle], Tag(ROW_FORM)] | Annotated[CandleColumns, Tag(COLUMN_FORM)],
    Discriminator(
        lambda value: COLUMN_FORM if isinstance(value, dict | CandleColumns) else ROW_FORM
    ),
    Field(description=CANDLES_DESCRIPTION),
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

    windows: list[PredictWindow] = Field(  # type: ignore[assignment]  # narrows the batch
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
    """What is being served: tag, stage, metrics, feature contract, data ranges, age and expiry."""

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
    expiry: dict[str, Any] = Field(
        description="trained_at, age_hours, expires_at (null: no expiry recorded), expired "
        "and a status sentence, as of this answer"
    )


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer."""

    error: str = Field(description="What was wrong: the field (and row) and the rule broken.")
