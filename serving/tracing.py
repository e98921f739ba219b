"""No OpenTelemetry work per request when BentoML's tracing keeps no trace (issue 12, goal 3).

BentoML 1.4 wraps its API server and every runner server in OpenTelemetry's ASGI middleware,
and its gRPC server in OpenTelemetry's server interceptor, whatever ``tracing.sample_rate``
says. With the rate unset (its default) or 0, the sampler drops every span, yet the middleware
still builds three spans a request (the request, its receive and its send), extracts the
propagation headers and collects the request's attributes (the interceptor one span, with the
call's attributes), and the dropped spans are never exported anywhere.
:func:`skip_unsampled_tracing` leaves them out when tracing keeps nothing; with
``tracing.sample_rate`` > 0 all three servers stay exactly as BentoML builds them, so turning
tracing on still traces every request.

What changes with tracing off: the ``trace=...,span=...`` fields of BentoML's access-log lines
read 0 (they named spans that were dropped, so nothing could be looked up by them); requests are
correlated by their ``x-request-id`` (``serving.logs``), which every log line and answer carries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def tracing_keeps_traces() -> bool:
    """Whether BentoML's tracing keeps any trace (``tracing.sample_rate`` > 0; its default,
    unset, keeps none)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return bool(BentoMLContainer.config.tracing.sample_rate.get())


def _without_tracing(built_by: property, is_tracing: Callable[[Any], bool]) -> property:
    """``built_by`` (a factory's list property) without the items ``is_tracing`` picks while
    tracing keeps no trace."""
    build = built_by.fget
    assert build is not None

    def lean(self: Any) -> list[Any]:
        built = build(self)
        if tracing_keeps_traces():
            return built
        return [item for item in built if not is_tracing(item)]

    lean._skips_unsampled_tracing = True  # type: ignore[attr-defined]
    return property(lean)


def skip_unsampled_tracing() -> bool:
    """Leave OpenTelemetry's ASGI middleware out of the API and runner apps, and its server
    interceptor out of the gRPC server, while tracing keeps no trace (module doc). Call it
    before the apps are built (importing the service does).

    Returns False, changing nothing, if this BentoML version builds its apps differently
    (tested against the pinned one, so an upgrade that moves it is noticed).
    """
    try:
        from bentoml._internal.server.grpc_app import Server as GrpcServer
        from bentoml._internal.server.http_app import HTTPAppFactory
        from bentoml._internal.server.runner_app import RunnerAppFactory
        from bentoml.grpc.interceptors.opentelemetry import AsyncOpenTelemetryServerInterceptor
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        return False

    def asgi_tracing(middleware: Any) -> bool:
        return getattr(middleware, "cls", None) is OpenTelemetryMiddleware

    def grpc_tracing(interceptor: Any) -> bool:
        return interceptor is AsyncOpenTelemetryServerInterceptor

    built = (
        (HTTPAppFactory, "middlewares", asgi_tracing),
        (RunnerAppFactory, "middlewares", asgi_tracing),
        (GrpcServer, "interceptors", grpc_tracing),
    )
    for owner, name, _ in built:
        current = owner.__dict__.get(name)
        if not isinstance(current, property) or current.fget is None:
            return False
    for owner, name, is_tracing in built:
        current = owner.__dict__[name]
        if not getattr(current.fget, "_skips_unsampled_tracing", False):
            setattr(owner, name, _without_tracing(current, is_tracing))
    return True
