"""A ``bentoml.io.JSON`` whose every failure is a 400 naming the problem, on HTTP and gRPC.

BentoML's own JSON descriptor answers 500 to a body that is not UTF-8 and words its 400s for
itself; here decoding, parsing and validation all raise :class:`serving.errors.InvalidRequest`.
The pydantic model given to the descriptor documents the API in ``/docs.json``; ``parse`` does
the validation (it may pick among several models, as ``predict`` does for its two forms).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bentoml.io import JSON
from pydantic import BaseModel

from serving.errors import reject


class ValidatedJSON(JSON):
    """JSON in, ``parse(payload)`` out; an empty body reads as ``{}`` where ``empty_ok``."""

    def __init__(
        self,
        *,
        pydantic_model: type[BaseModel],
        parse: Callable[[Any], Any],
        empty_ok: bool = False,
    ):
        super().__init__(pydantic_model=pydantic_model)
        self._parse = parse
        self._empty_ok = empty_ok

    def decode(self, body: bytes) -> Any:
        """Bytes to the parsed request, or an ``InvalidRequest``."""
        if not body.strip():
            if self._empty_ok:
                return self._parse({})
            raise reject("invalid_json", "body: empty; send a JSON object")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(
                "invalid_encoding", f"body: not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise reject(
                "invalid_json",
                f"body: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            ) from None
        except RecursionError:
            raise reject("invalid_json", "body: JSON nested too deeply") from None
        return self._parse(payload)

    async def from_http_request(self, request: Any) -> Any:
        return self.decode(await request.body())

    async def from_proto(self, field: Any) -> Any:
        if isinstance(field, bytes):
            return self.decode(field)
        from google.protobuf.json_format import MessageToDict

        return self._parse(MessageToDict(field, preserving_proto_field_name=True))
