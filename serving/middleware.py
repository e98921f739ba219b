"""HTTP middleware (ASGI) and gRPC interceptor around the APIs.

HTTP, on the API routes: the request id (``X-Request-ID`` in and out), a body limit (413
before BentoML reads the body), every error answer as the contract's ``{"error": "..."}``
(BentoML words its 4xx bodies as a JSON string and leaves 5xx bodies empty), and one
``request`` log line per call. gRPC: the request id from and to ``x-request-id`` metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from serving.errors import error_body
from serving.logs import REQUEST_ID_HEADER, log_event, new_request_id, set_request_id
from serving.metrics import service_metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_BENTOML_4XX_PREFIX = "BentoService error handling API request: "
_STATUS_ERRORS = {
    413: "body: larger than the limit",
    500: "internal error; see the server logs for this request id",
    503: "service unavailable: the model is not loaded (yet) or the server is overloaded; retry",
}


def contract_error_body(status: int, body: bytes) -> bytes:
    """Rewrite an error answer from BentoML/Starlette into ``{"error": "..."}``."""
    try:
        content = json.loads(body) if body else None
    except ValueError:
        content = body.decode("utf-8", "replace")
    if isinstance(content, dict) and isinstance(content.get("error"), str):
        return body
    if isinstance(content, dict) and "detail" in content:  # Starlette HTTPException
        content = str(content["detail"])
    if isinstance(content, str) and content.startswith(_BENTOML_4XX_PREFIX):
        inner = content.removeprefix(_BENTOML_4XX_PREFIX)
        try:
            parsed = json.loads(inner)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return error_body(parsed["error"]).encode()
        content = inner
    if not content or status in (500, 503):
        content = _STATUS_ERRORS.get(status, f"HTTP {status}")
    return error_body(str(content)).encode()


class ApiMiddleware:
    """ASGI middleware for the API routes (``paths``); other routes pass through untouched."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], *, paths: Iterable[str], max_body_bytes: int
    ):
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = new_request_id(headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1"))
        set_request_id(request_id)
        started = time.perf_counter()
        response = _ContractResponse(send, request_id)
        body = await self._read_body(headers, receive)
        if body is None:
            error = f"body: larger than the limit of {self.max_body_bytes} bytes"
            service_metrics().rejections.labels(reason="body_too_large").inc()
            log_event("rejected", reason="body_too_large", error=error)
            await response.send_error(413, error)
        else:
            await self.app(scope, _replay(body, receive), response.send)
        log_event(
            "request",
            path=scope["path"],
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        """The whole request body, or None if it is larger than ``max_body_bytes`` (checked
        on Content-Length first, then on the bytes actually received)."""
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body over once, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _ContractResponse:
    """Wraps ``send``: adds the request id header; error answers get the contract body."""

    def __init__(self, send: Send, request_id: str):
        self._send = send
        self._request_id_header = (REQUEST_ID_HEADER.encode(), request_id.encode())
        self._held_start: Message | None = None
        self._held_body = b""
        self.status: int | None = None

    async def send_error(self, status: int, error: str) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": []})
        await self.send({"type": "http.response.body", "body": error_body(error).encode()})

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [*message.get("headers", []), self._request_id_header]
            message = {**message, "headers": headers}
            if self.status >= 400:  # hold it until the whole body is there to rewrite
                self._held_start = message
                return
        elif message["type"] == "http.response.body" and self._held_start is not None:
            self._held_body += message.get("body", b"")
            if message.get("more_body", False):
                return
            body = contract_error_body(self._held_start["status"], self._held_body)
            kept = [
                (k, v)
                for k, v in self._held_start["headers"]
                if k.lower() not in (b"content-length", b"content-type")
            ]
            kept += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
            await self._send({**self._held_start, "headers": kept})
            self._held_start = None
            message = {"type": "http.response.body", "body": body}
        await self._send(message)


class RequestIdInterceptor(grpc.aio.ServerInterceptor):
    """gRPC: take ``x-request-id`` from the call metadata (or make one) and send it back."""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        inner = handler.unary_unary

        async def with_request_id(request, context):  # type: ignore[no-untyped-def]
            request_id = new_request_id(metadata.get(REQUEST_ID_HEADER))
            set_request_id(request_id)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            with_request_id,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
