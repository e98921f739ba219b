"""A ``bentoml.io.JSON`` whose every failure is a 400 naming the problem, on HTTP and gRPC.

BentoML's own JSON descriptor answers 500 to a body that is not UTF-8 and words its 400s for
itself; here decoding, parsing and validation all raise :class:`serving.errors.InvalidRequest`.
The pydantic model given to the descriptor documents the API in ``/docs.json``; ``parse`` does
the validation (it may pick among several models, as ``predict`` does for its two forms).

Over gRPC the input may come in either content field of BentoML's v1 ``Request``:
``serialized_bytes`` (JSON bytes, exact numbers) or ``json`` (a ``google.protobuf.Value``,
BentoML's documented field for a JSON API; its numbers are doubles). ``IODescriptor``'s
``__init_subclass__`` resets ``proto_fields`` to ``()`` for a subclass that names none, which
made BentoML refuse ``json``; the subclass below declares it again.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2
from pydantic import BaseModel
from pydantic_core import from_json

from serving.errors import reject
from serving.startup import silence_legacy_api_warnings

with warnings.catch_warnings():  # bentoml.io warns at import that it is the legacy API
    silence_legacy_api_warnings()
    from bentoml.io import JSON


def value_to_python(value: struct_pb2.Value) -> Any:
    """A ``google.protobuf.Value`` as plain Python (numbers as floats). Unlike
    ``MessageToDict`` it keeps NaN and infinities as floats, so the schema refuses them with the
    field's name instead of the converter failing without one."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: value_to_python(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or a Value with nothing set


class ValidatedJSON(JSON, proto_fields=("json",)):
    """JSON in, ``parse(payload)`` out; an empty body reads as ``{}`` where ``empty_ok``."""

    def __init__(
        self,
        *,
        pydantic_model: type[BaseModel],
        parse: Callable[[Any], Any],
        empty_ok: bool = False,
        fast_decode: Callable[[bytes], Any | None] | None = None,
    ):
        """``fast_decode``: tried first on JSON bytes (HTTP bodies, gRPC ``serialized_bytes``);
        it returns the parsed request for what it takes plainly, or None to leave the bytes to
        the general path (:class:`serving.windows.WindowDecoder`)."""
        super().__init__(pydantic_model=pydantic_model)
        self._parse = parse
        self._empty_ok = empty_ok
        self._fast_decode = fast_decode

    def decode(self, body: bytes) -> Any:
        """Bytes to the parsed request, or an ``InvalidRequest``."""
        if not body.strip():
            if self._empty_ok:
                return self._parse({})
            raise reject("invalid_json", "body: empty; send a JSON object")
        if self._fast_decode is not None:
            parsed = self._fast_decode(body)
            if parsed is not None:
                return parsed
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(
                "invalid_encoding", f"body: not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
        try:  # pydantic-core's parser: ~2.4x json.loads on a 256-candle window
            payload = from_json(body, allow_inf_nan=True)
        except ValueError:  # json.loads judges (it accepts lone surrogates...) and words it
            payload = self._json_loads(text)
        return self._parse(payload)

    @staticmethod
    def _json_loads(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise reject(
                "invalid_json",
                f"body: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            ) from None
        except RecursionError:
            raise reject("invalid_json", "body: JSON nested too deeply") from None

    async def from_http_request(self, request: Any) -> Any:
        return self.decode(await request.body())

    async def from_proto(self, field: Any) -> Any:
        if isinstance(field, bytes):
            return self.decode(field)
        if field.WhichOneof("kind") is None and self._empty_ok:
            return self._parse({})
        try:
            payload = value_to_python(field)
        except RecursionError:
            raise reject("invalid_json", "json: nested too deeply") from None
        return self._parse(payload)
