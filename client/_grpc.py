"""gRPC client for ``bentoml serve-grpc``, with the stubs of BentoML's ``bentoml.grpc.v1`` proto.

Requests travel as JSON bytes (``Request.serialized_bytes``, exact numbers); answers come back
as a ``google.protobuf.Value``, whose numbers are doubles: the integer fields of the contract
(``horizon_bars``, ``warmup_bars``, ``label_horizon``) are turned back into ints.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from bentoml.grpc.v1 import service_pb2, service_pb2_grpc
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client._common import Candles, ServiceClient, ServiceError, error_message

INTEGER_FIELDS = frozenset({"horizon_bars", "warmup_bars", "label_horizon"})
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVICE_NAME = "bentoml.grpc.v1.BentoService"


def _restore_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: int(v) if k in INTEGER_FIELDS and isinstance(v, float) else _restore_ints(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_restore_ints(v) for v in value]
    return value


class GrpcClient(ServiceClient):
    """Calls the service's APIs over gRPC at ``address`` (e.g. ``127.0.0.1:3010``)."""

    def __init__(self, address: str = "127.0.0.1:3010", *, timeout_s: float = 60.0):
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = service_pb2_grpc.BentoServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._feature_names: dict[str, list[str]] = {}

    def call(self, api: str, payload: Any, *, request_id: str | None = None) -> Any:
        """Call ``api`` with ``payload`` (JSON-able, or JSON bytes as they are); the decoded
        answer, or :class:`ServiceError`."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request = service_pb2.Request(api_name=api, serialized_bytes=body)
        metadata = (("x-request-id", request_id),) if request_id else None
        try:
            response = self._stub.Call(request, timeout=self._timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            raise ServiceError(code.name, error_message(exc.details() or "")) from None  # type: ignore[attr-defined]
        return _restore_ints(MessageToDict(response.json))

    def indicators(self, candles: Candles, *, all_rows: bool = False) -> dict[str, Any]:
        """Feature values of the last candle (``all_rows``: also every warmed-up candle).

        A protobuf Struct does not keep key order: ``values`` are put back in the order of
        the model's feature contract (from :meth:`model_info`, fetched once per model tag).
        """
        answer = super().indicators(candles, all_rows=all_rows)
        order = self._feature_order(answer["model_tag"])
        for row in [answer, *answer.get("rows", [])]:
            row["values"] = {name: row["values"][name] for name in order}
        return answer

    def _feature_order(self, model_tag: str) -> list[str]:
        if model_tag not in self._feature_names:
            info = self.model_info()
            self._feature_names[info["model_tag"]] = list(info["feature_names"])
        return self._feature_names[model_tag]

    def is_ready(self, timeout_s: float = 1.0) -> bool:
        """The gRPC health check says ``SERVING`` (set once the runners, and so the model,
        are up)."""
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        try:
            answer = health_pb2_grpc.HealthStub(self._channel).Check(request, timeout=timeout_s)
        except grpc.RpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        self._channel.close()
