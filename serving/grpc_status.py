"""gRPC metrics and access log under the status the client received.

BentoML 1.4.39's gRPC interceptors get the status wrong for every refused call:

- ``PrometheusServerInterceptor`` reads ``context.code()`` *before* the call runs, so a call
  refused with ``INVALID_ARGUMENT`` is counted in ``bentoml_api_server_request_total`` under
  ``http_response_code="200"`` (and its duration is measured before the call, too);
- ``AccessLogServerInterceptor`` catches the ``AbortError`` that ``context.abort`` raises and
  overwrites its code with ``INTERNAL``, so the access log says ``http_status=500,
  grpc_status=13`` for a client mistake.

The classes below keep BentoML's metric names, labels and log format and record the status the
call ended with: the code given to ``context.abort`` (INVALID_ARGUMENT -> ``400``, UNAVAILABLE
-> ``503``...), ``OK`` -> ``200``, and ``INTERNAL`` -> ``500`` for an exception that escaped.
:func:`install` puts them where BentoML's gRPC server looks them up (it imports them by name
from their modules when it builds its interceptor list, after the service is imported).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from timeit import default_timer
from typing import Any

import grpc
from bentoml._internal.context import server_context
from bentoml.grpc.interceptors import access, prometheus
from bentoml.grpc.utils import GRPC_CONTENT_TYPE, to_http_status, wrap_rpc_handler
from bentoml.grpc.v1 import service_pb2 as pb

Behaviour = Callable[[Any, Any], Awaitable[Any]]


def final_status(context: Any, raised: BaseException | None) -> grpc.StatusCode:
    """The status a unary call ended with: ``raised`` is what its handler raised, if anything
    (``AbortError`` means ``context.abort`` set the code the client receives)."""
    if raised is None or isinstance(raised, grpc.aio.AbortError):
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code
        return grpc.StatusCode.OK if raised is None else grpc.StatusCode.UNKNOWN
    if isinstance(raised, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL


class PrometheusInterceptor(prometheus.PrometheusServerInterceptor):
    """BentoML's gRPC request metrics, labelled with the status the call ended with."""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        if not self._is_setup:
            self._setup()
        handler = await continuation(handler_call_details)
        if handler and (handler.response_streaming or handler.request_streaming):
            return handler

        def wrapper(behaviour: Behaviour) -> Behaviour:
            @functools.wraps(behaviour)
            async def observed(request: Any, context: Any) -> Any:
                if not isinstance(request, pb.Request):
                    return await behaviour(request, context)
                labels = {
                    "api_name": request.api_name,
                    "service_name": server_context.bento_name,
                    "service_version": server_context.bento_version,
                }
                started = default_timer()
                raised: BaseException | None = None
                try:
                    with self.metrics_request_in_progress.labels(**labels).track_inprogress():
                        return await behaviour(request, context)
                except BaseException as exc:
                    raised = exc
                    raise
                finally:
                    code = to_http_status(final_status(context, raised))
                    self.metrics_request_total.labels(**labels, http_response_code=code).inc()
                    self.metrics_request_duration.labels(**labels, http_response_code=code).observe(
                        max(default_timer() - started, 0.0)
                    )

            return observed

        return wrap_rpc_handler(wrapper, handler)


class AccessLogInterceptor(access.AccessLogServerInterceptor):
    """BentoML's gRPC access log line, with the status the call ended with."""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        logger = logging.getLogger("bentoml.access")
        handler = await continuation(handler_call_details)
        method_name = handler_call_details.method
        if handler and (handler.response_streaming or handler.request_streaming):
            return handler

        def wrapper(behaviour: Behaviour) -> Behaviour:
            @functools.wraps(behaviour)
            async def logged(request: Any, context: Any) -> Any:
                trailing = dict(context.trailing_metadata() or ())
                content_type = trailing.get("content-type", GRPC_CONTENT_TYPE)
                response = pb.Response()
                started = default_timer()
                raised: BaseException | None = None
                try:
                    response = await behaviour(request, context)
                    return response
                except grpc.aio.AbortError as exc:  # the client gets the code given to abort
                    raised = exc
                    raise
                except Exception as exc:  # as BentoML does: answer INTERNAL, keep serving
                    raised = exc
                    context.set_code(grpc.StatusCode.INTERNAL)
                    context.set_details(str(exc))
                    return response
                finally:
                    code = final_status(context, raised)
                    logger.info(
                        "%s (%s) (%s) %.3fms",
                        context.peer(),
                        f"scheme=http,path={method_name},type={content_type},"
                        f"size={request.ByteSize()}",
                        f"http_status={to_http_status(code)},grpc_status={code.value[0]},"
                        f"type={content_type},size={response.ByteSize()}",
                        max(default_timer() - started, 0.0) * 1000,
                    )

            return logged

        return wrap_rpc_handler(wrapper, handler)


def install() -> None:
    """Make BentoML's gRPC server use the interceptors above (call at service import)."""
    prometheus.PrometheusServerInterceptor = PrometheusInterceptor  # type: ignore[misc]
    access.AccessLogServerInterceptor = AccessLogInterceptor  # type: ignore[misc]
