"""From a parsed request to validated candle windows, and from raw JSON to a parsed request.

Every rule on candles is ``features.candles.validate_candles``'s (and timestamps are parsed by
``features.candles.parse_timestamps``, as for files); this module adds the request-level limits and
names the offending field: ``candles row 3: high (...) must be >= low (...)``, or
``windows[1].candles row 3: ...`` in a batch.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from features import BAR_INTERVAL, OHLCV_COLUMNS, TIMESTAMP_COLUMN, CandleValidationError
from features.candles import check_candle_arrays, timestamps_to_us
from serving.errors import InvalidRequest, reject
from serving.schemas import (
    CANDLE_FIELDS,
    COLUMN_FORM,
    EPOCH_MS_MAX,
    ROW_FORM,
    Candle,
    CandleColumns,
    IndicatorsRequest,
    ModelInfoRequest,
    PredictBatch,
    PredictWindow,
    Window,
    WindowBatch,
)

WindowT = TypeVar("WindowT", bound=Window)


@dataclass(frozen=True)
class CandleWindow:
    """One validated window: its field name in the request, the open times as int64 epoch
    microseconds, and the candles as an ``(n_bars, 5)`` float64 array in
    :data:`features.OHLCV_COLUMNS` order (the runner input, built once from the parsed values,
    which validation keeps as they are)."""

    field: str
    timestamps_us: np.ndarray
    ohlcv: np.ndarray

    @property
    def last_timestamp_us(self) -> int:
        return int(self.timestamps_us[-1])

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The canonical candle frame (``features.validate_candles``'s form), built on demand
        (only ``indicators`` with ``all_rows`` needs it)."""
        stamps = pd.Series(self.timestamps_us.astype("datetime64[us]")).dt.tz_localize("UTC")
        frame = pd.DataFrame({TIMESTAMP_COLUMN: stamps})
        for j, column in enumerate(OHLCV_COLUMNS):
            frame[column] = self.ohlcv[:, j]
        return frame


def format_epoch_us(us: int | np.integer) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, as in the contract (``2021-11-10T14:00:00Z``)."""
    return f"{np.datetime64(int(us), 'us').astype('datetime64[s]')}Z"


def _where(loc: Sequence[str | int]) -> str:
    """A pydantic error location as the request field: ``windows[1].candles row 3: open``.

    The tags of the two window forms are dropped, and a column-form location
    (``candles, open, 3``) reads as the row form's (``candles row 3: open``), so one mistake
    gets one message whichever form carried it.
    """
    parts = list(loc)
    if COLUMN_FORM in parts:
        k = parts.index(COLUMN_FORM)
        tail = parts[k + 1 :]
        parts = parts[:k] + (tail[::-1] if len(tail) == 2 else tail)
    parts = [part for part in parts if part != ROW_FORM]
    text = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            text += f" row {part}:" if i and parts[i - 1] == "candles" else f"[{part}]"
        elif text.endswith(":"):
            text += f" {part}"
        else:
            text += f".{part}" if text else str(part)
    return text.rstrip(":") or "body"


def validation_message(exc: ValidationError) -> str:
    """The first pydantic error as ``<field>: <rule>``, plus how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    rule = first["msg"].removeprefix("Value error, ")
    message = f"{_where(first['loc'])}: {rule}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error(s))"
    return message


def _validate(model: type[BaseModel], payload: Any) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise reject("invalid_schema", validation_message(exc)) from None


def _too_many_candles(field: str, count: int, max_candles: int) -> InvalidRequest:
    return reject(
        "too_many_candles", f"{field}: at most {max_candles} candles per window, got {count}"
    )


def _too_many_windows(count: int, max_windows: int) -> InvalidRequest:
    return reject(
        "too_many_windows", f"windows: at most {max_windows} windows per request, got {count}"
    )


def _window_size(candles: Any) -> int | None:
    """Candles in a raw window (row form: the list; column form: its longest array)."""
    if isinstance(candles, list):
        return len(candles)
    if isinstance(candles, dict):
        return max((len(v) for v in candles.values() if isinstance(v, list)), default=0)
    return None


def check_sizes(payload: Any, *, max_candles: int | None, max_windows: int | None) -> None:
    """Refuse oversized windows/batches on the raw JSON, before validating every candle (a
    16 MiB body of candles takes seconds to validate; counting them takes microseconds)."""
    if not isinstance(payload, dict):
        return
    windows = payload.get("windows")
    size = _window_size(payload.get("candles"))
    if max_candles is not None and size is not None and size > max_candles:
        raise _too_many_candles("candles", size, max_candles)
    if not isinstance(windows, list):
        return
    if max_windows is not None and len(windows) > max_windows:
        raise _too_many_windows(len(windows), max_windows)
    for i, window in enumerate(windows):
        size = _window_size(window.get("candles")) if isinstance(window, dict) else None
        if max_candles is not None and size is not None and size > max_candles:
            raise _too_many_candles(f"windows[{i}].candles", size, max_candles)


def _fast_timestamps(stamps: list[Any]) -> list[Any] | None:
    """``stamps`` if the schema's ``Timestamp`` rule accepts every one of them as it is (all
    strings of 1..64 characters, or all non-negative integers up to EPOCH_MS_MAX; integral
    doubles, as gRPC ``json`` Values carry, become integers); else None."""
    kinds = set(map(type, stamps))
    if kinds == {str}:
        lengths = list(map(len, stamps))
        return stamps if min(lengths) > 0 and max(lengths) <= 64 else None
    if kinds == {float} and all(map(float.is_integer, stamps)):
        stamps = list(map(int, stamps))
        kinds = {int}
    if kinds == {int} and min(stamps) >= 0 and max(stamps) <= EPOCH_MS_MAX:
        return stamps
    return None


_row_fields = operator.itemgetter(*CANDLE_FIELDS)


def _fast_candles(raw: Any) -> CandleColumns | None:
    """The window ``raw`` (row or column form) as validated columns, when it is plainly valid
    JSON-wise: every field present with the type the schema wants, numbers finite. Anything
    else gives None, and the pydantic schema judges it and words the message, so both paths
    accept the same windows. (The pydantic path builds one object per candle: ~25 % of an API
    worker's CPU for a 256-candle window; this takes a few list passes.)"""
    columns: dict[str, Any]
    if type(raw) is list:
        if not raw or set(map(type, raw)) != {dict}:
            return None
        try:  # one pass over the rows, in C: (timestamp, open, ...) per row, then transposed
            transposed = zip(*map(_row_fields, raw), strict=True)
            columns = dict(zip(CANDLE_FIELDS, transposed, strict=True))
        except KeyError:
            return None
        columns["timestamp"] = list(columns["timestamp"])
    elif type(raw) is dict:
        columns = {name: raw.get(name) for name in CANDLE_FIELDS}
        if any(type(v) is not list for v in columns.values()):
            return None
        if len(set(map(len, columns.values()))) != 1 or not columns["timestamp"]:
            return None
    else:
        return None
    stamps = _fast_timestamps(columns["timestamp"])
    if stamps is None:
        return None
    values: dict[str, Any] = {}
    for name in OHLCV_COLUMNS:
        column = columns[name]
        if not set(map(type, column)) <= {float, int}:
            return None
        values[name] = np.array(column, dtype="float64")
        if not np.isfinite(values[name]).all():
            return None
    return CandleColumns.model_construct(timestamp=stamps, **values)


_TimestampValue = (
    Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    | Annotated[int, msgspec.Meta(ge=0, le=EPOCH_MS_MAX)]
)
"""The schema's ``Timestamp`` rule for JSON values, as msgspec checks it (an integral double,
which only gRPC ``json`` Values carry, goes to the general path)."""


class _RowCandle(msgspec.Struct, gc=False):
    """A row-form candle as msgspec decodes it: the schema's types, strictly (a float field
    takes an integer, never a bool or a string); unknown keys are skipped, as pydantic does."""

    timestamp: _TimestampValue
    open: float
    high: float
    low: float
    close: float
    volume: float


class _ColumnCandles(msgspec.Struct, gc=False):
    timestamp: list[_TimestampValue]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]


_row_attributes = operator.attrgetter(*CANDLE_FIELDS)


def _decoded_candles(raw: list[_RowCandle] | _ColumnCandles) -> CandleColumns | None:
    """:func:`_fast_candles` of msgspec's typed window: the types and the timestamp rule are
    checked already, and msgspec refuses NaN, infinities and numbers out of float64's range, so
    the values are finite; what is left is, for columns, equal lengths. (Timestamps of mixed
    kinds pass here as they pass the schema: the window check refuses them, naming the row.)"""
    if isinstance(raw, list):
        if not raw:
            return None
        timestamps, *values = zip(*map(_row_attributes, raw), strict=True)
        stamps = list(timestamps)
    else:
        values = [getattr(raw, name) for name in OHLCV_COLUMNS]
        if len({len(raw.timestamp), *map(len, values)}) != 1 or not raw.timestamp:
            return None
        stamps = raw.timestamp
    columns = np.array(values, dtype="float64")
    return CandleColumns.model_construct(
        timestamp=stamps, **dict(zip(OHLCV_COLUMNS, columns, strict=True))
    )


_Candles = list[_RowCandle] | _ColumnCandles


def _typed_struct(model: type[BaseModel], typed: dict[str, Any]) -> type[msgspec.Struct]:
    """A msgspec struct of ``model``'s fields: those in ``typed`` with their given types, the
    others as any JSON value (pydantic validates them), every one optional (``UNSET``)."""
    fields: list[Any] = [
        (name, kind | msgspec.UnsetType, msgspec.UNSET) for name, kind in typed.items()
    ]
    fields += [(name, Any, msgspec.UNSET) for name in model.model_fields if name not in typed]
    return msgspec.defstruct(f"_Typed{model.__name__}", fields, gc=False)


def _given(decoded: msgspec.Struct, *, skip: tuple[str, ...]) -> dict[str, Any]:
    """The fields a client sent, as a dict, without ``skip``."""
    fields = msgspec.structs.asdict(decoded)
    return {k: v for k, v in fields.items() if v is not msgspec.UNSET and k not in skip}


@dataclass(frozen=True)
class WindowDecoder:
    """A ``predict`` or ``indicators`` request decoded from its JSON bytes by msgspec, typed,
    in one C pass: ~0.22 ms of API-worker CPU for a 256-candle window against ~0.45-0.6 ms for
    parsing to Python objects and then checking them (docs/BENCHMARKS.md). It takes exactly
    what the general path takes plainly (the same types, the same timestamp rule, the same
    size limits with the same messages); anything else, including every other invalid request,
    gives None, and the general path judges it and words the message.

    Attributes:
        model: the one-window request model; its fields other than ``candles`` are validated
            by pydantic as in the general path.
        batch: the batch model (``{"windows": [...]}``), if the API takes batches.
        max_candles, max_windows: the size limits, checked before anything else is validated.
    """

    model: type[Window]
    batch: type[WindowBatch] | None = None
    max_candles: int | None = None
    max_windows: int | None = None

    @cached_property
    def _decoder(self) -> msgspec.json.Decoder[Any]:
        typed: dict[str, Any] = {"candles": _Candles}
        if self.batch is not None:  # its windows are one-window requests of ``model``
            window = _typed_struct(self.model, {"candles": _Candles})
            typed["windows"] = list[window]  # type: ignore[valid-type]
        return msgspec.json.Decoder(_typed_struct(self.model, typed))

    def _check_size(self, field: str, candles: list[_RowCandle] | _ColumnCandles) -> None:
        """:func:`check_sizes`' rule: rows, or the longest column."""
        if isinstance(candles, list):
            size = len(candles)
        else:
            size = max(len(getattr(candles, name)) for name in CANDLE_FIELDS)
        if self.max_candles is not None and size > self.max_candles:
            raise _too_many_candles(field, size, self.max_candles)

    def __call__(self, body: bytes) -> Window | WindowBatch | None:
        try:
            decoded = self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):  # malformed, not plainly typed, too deep
            return None
        candles = decoded.candles
        windows = getattr(decoded, "windows", msgspec.UNSET)
        if windows is not msgspec.UNSET:
            if candles is not msgspec.UNSET or not windows:
                return None  # both forms, or no window: the general path words it
            return self._batch(decoded, windows)
        if candles is msgspec.UNSET:
            return None
        self._check_size("candles", candles)
        columns = _decoded_candles(candles)
        if columns is None:
            return None
        skeleton = _validate(self.model, {**_given(decoded, skip=("candles",)), "candles": []})
        return skeleton.model_copy(update={"candles": columns})

    def _batch(self, decoded: msgspec.Struct, windows: list[Any]) -> WindowBatch | None:
        assert self.batch is not None
        if self.max_windows is not None and len(windows) > self.max_windows:
            raise _too_many_windows(len(windows), self.max_windows)
        for i, window in enumerate(windows):
            if window.candles is msgspec.UNSET:
                return None
            self._check_size(f"windows[{i}].candles", window.candles)
        filled = [_decoded_candles(window.candles) for window in windows]
        if any(columns is None for columns in filled):
            return None
        skeleton = {
            **_given(decoded, skip=("candles", "windows")),
            "windows": [{**_given(w, skip=("candles",)), "candles": []} for w in windows],
        }
        batch = _validate(self.batch, skeleton)  # positions etc., by window
        return batch.model_copy(
            update={
                "windows": [
                    w.model_copy(update={"candles": columns})
                    for w, columns in zip(batch.windows, filled, strict=True)
                ]
            }
        )


def _with_fast_candles(model: type[WindowT], payload: dict[str, Any]) -> WindowT | None:
    """``model`` (a window with candles) from ``payload`` with its candles taken by
    :func:`_fast_candles` and the other fields validated by pydantic; None if the candles are
    not plainly valid."""
    candles = _fast_candles(payload.get("candles"))
    if candles is None:
        return None
    skeleton = _validate(model, {**payload, "candles": []})
    return skeleton.model_copy(update={"candles": candles})


def parse_predict(
    payload: Any, *, max_candles: int | None = None, max_windows: int | None = None
) -> PredictWindow | PredictBatch:
    """``{"candles": [...]}`` or ``{"windows": [...]}`` (not both); with limits given, oversized
    requests are refused before validation (:func:`check_sizes`)."""
    check_sizes(payload, max_candles=max_candles, max_windows=max_windows)
    if isinstance(payload, dict) and "windows" in payload:
        if "candles" in payload:
            raise reject("invalid_schema", "body: give either candles or windows, not both")
        windows = payload["windows"]
        if type(windows) is list and windows and all(type(w) is dict for w in windows):
            fast = [_fast_candles(w.get("candles")) for w in windows]
            if all(candles is not None for candles in fast):
                skeleton = {**payload, "windows": [{**w, "candles": []} for w in windows]}
                batch = _validate(PredictBatch, skeleton)  # positions etc., by window
                filled = [
                    w.model_copy(update={"candles": candles})
                    for w, candles in zip(batch.windows, fast, strict=True)
                ]
                return batch.model_copy(update={"windows": filled})
        return _validate(PredictBatch, payload)
    if isinstance(payload, dict):
        fast_window = _with_fast_candles(PredictWindow, payload)
        if fast_window is not None:
            return fast_window
    return _validate(PredictWindow, payload)


def parse_indicators(payload: Any, *, max_candles: int | None = None) -> IndicatorsRequest:
    check_sizes(payload, max_candles=max_candles, max_windows=None)
    if isinstance(payload, dict):
        fast = _with_fast_candles(IndicatorsRequest, payload)
        if fast is not None:
            return fast
    return _validate(IndicatorsRequest, payload)


def parse_model_info(payload: Any) -> ModelInfoRequest:
    return _validate(ModelInfoRequest, payload)


def _columns(candles: list[Candle] | CandleColumns) -> tuple[list[Any], np.ndarray]:
    """The timestamps (as given) and the ``(n_bars, 5)`` OHLCV array of a parsed window."""
    if isinstance(candles, CandleColumns):
        ohlcv = np.column_stack([getattr(candles, name) for name in OHLCV_COLUMNS])
        return candles.timestamp, ohlcv.astype("float64", copy=False)
    n = len(candles)
    ohlcv = np.empty((n, len(OHLCV_COLUMNS)), dtype="float64")
    for j, name in enumerate(OHLCV_COLUMNS):
        ohlcv[:, j] = np.fromiter((getattr(c, name) for c in candles), "float64", n)
    return [c.timestamp for c in candles], ohlcv


def candle_window(
    candles: list[Candle] | CandleColumns,
    *,
    field: str,
    min_candles: int,
    max_candles: int,
    interval: pd.Timedelta = BAR_INTERVAL,
) -> CandleWindow:
    """Check the limits, parse the timestamps and validate the candles of one window.

    Raises:
        InvalidRequest: naming ``field`` (and the row) and the rule broken.
    """
    stamps, ohlcv = _columns(candles)
    if len(stamps) < min_candles:
        raise reject(
            "too_few_candles",
            f"{field}: a window needs at least {min_candles} candles (warmup_bars + 1), "
            f"got {len(stamps)}",
        )
    if len(stamps) > max_candles:
        raise _too_many_candles(field, len(stamps), max_candles)
    as_text = isinstance(stamps[0], str)
    kinds = set(map(type, stamps))
    if len(kinds) > 1 and any(issubclass(kind, str) for kind in kinds):
        row = next(i for i, stamp in enumerate(stamps) if isinstance(stamp, str) != as_text)
        raise reject(
            "invalid_timestamp",
            f"{field} row {row}: timestamp: all timestamps of a window must be ISO 8601 "
            f"strings or all epoch milliseconds, row 0 is {type(stamps[0]).__name__}",
        )
    try:
        timestamps_us = timestamps_to_us(stamps, what="timestamp")
    except CandleValidationError as exc:
        raise reject("invalid_timestamp", f"{field} {exc}") from None
    try:
        check_candle_arrays(timestamps_us, ohlcv, interval=interval, row_label=f"{field} row")
    except CandleValidationError as exc:
        raise reject("invalid_candles", str(exc)) from None
    return CandleWindow(field, timestamps_us, ohlcv)


def request_windows(
    request: Window | WindowBatch,
    *,
    min_candles: int,
    max_candles: int,
    max_windows: int,
    interval: pd.Timedelta = BAR_INTERVAL,
) -> list[CandleWindow]:
    """Every window of a predict/indicators request, validated, in request order."""
    if isinstance(request, WindowBatch):
        if not request.windows:
            raise reject("invalid_schema", "windows: give at least one window")
        if len(request.windows) > max_windows:
            raise _too_many_windows(len(request.windows), max_windows)
        named = [(f"windows[{i}].candles", w.candles) for i, w in enumerate(request.windows)]
    else:
        named = [("candles", request.candles)]
    return [
        candle_window(
            candles,
            field=field,
            min_candles=min_candles,
            max_candles=max_candles,
            interval=interval,
        )
        for field, candles in named
    ]
