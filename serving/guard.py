"""Runner calls that fail fast with a 503 while a runner is down, instead of hanging.

Why: BentoML's arbiter (circus) owns each runner's listening socket and restarts a runner that
dies. While the new process starts (seconds: imports + model load), new connections wait in the
socket's backlog, so a plain runner call just hangs until the restart (or the runner's
``traffic.timeout``, 300 s by default); a call in flight when the process dies fails with an
``aiohttp`` disconnect, which BentoML turns into a 500.

What :class:`RunnerGuard` does, per runner and API worker:

- a call that fails to reach the runner (disconnect, refused, ``traffic.timeout``) is a 503 and
  marks the runner down;
- a call still unanswered after ``probe_after_s`` triggers a readiness probe (``GET /readyz``
  on the runner, answered by the runner's event loop even while its workers compute); no answer
  within ``probe_timeout_s`` means down: the waiting calls get a 503;
- while down, calls get a 503 at once, and a probe every ``probe_timeout_s`` watches for the
  restarted runner; the first successful probe closes the circuit again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from bentoml.exceptions import RemoteException, ServiceUnavailable

from serving.errors import error_body
from serving.logs import log_event
from serving.settings import ServeSettings
from serving.tracing import tracing_keeps_traces


def unavailable(runner_name: str, why: str) -> ServiceUnavailable:
    """The 503 (gRPC ``UNAVAILABLE``) with the contract's ``{"error": ...}`` body."""
    return ServiceUnavailable(
        error_body(f"service unavailable: runner {runner_name!r} {why}; retry shortly")
    )


class RunnerGuard:
    """Fail-fast wrapper (a circuit breaker) around the calls to one runner."""

    def __init__(self, runner: Any, *, probe_after_s: float, probe_timeout_s: float):
        self.runner = runner
        self.probe_after_s = probe_after_s
        self.probe_timeout_s = probe_timeout_s
        self.down = False
        self._probe: asyncio.Task[bool] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return str(self.runner.name)

    async def call(self, method: Any, *args: Any) -> Any:
        """``await method.async_run(*args)``, or a 503 if the runner is down."""
        if self.down:
            raise unavailable(self.name, "is restarting")
        call = asyncio.ensure_future(method.async_run(*args))
        try:
            done, _ = await asyncio.wait({call}, timeout=self.probe_after_s)
            if not done and not await self._ready():
                raise unavailable(self.name, "is not answering")
            return await call
        except aiohttp.ClientError as exc:
            self._mark_down(repr(exc))
            raise unavailable(self.name, "connection lost") from exc
        except TimeoutError as exc:  # the runner's traffic.timeout
            raise unavailable(self.name, "timed out") from exc
        except RemoteException as exc:
            if "Failed to connect" not in str(exc):
                raise
            self._mark_down(str(exc))
            raise unavailable(self.name, "cannot be reached") from exc
        finally:
            if not call.done():
                call.cancel()

    async def _ready(self) -> bool:
        """One readiness probe shared by every caller waiting at the same time."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._is_ready())
        ready = await asyncio.shield(self._probe)
        if not ready:
            self._mark_down(f"no readiness answer within {self.probe_timeout_s} s")
        return ready

    async def _is_ready(self) -> bool:
        try:
            return bool(await self.runner.runner_handle_is_ready(self.probe_timeout_s))
        except Exception:  # refused, reset, timed out: not ready
            return False

    def _mark_down(self, reason: str) -> None:
        if not self.down:
            self.down = True
            log_event("runner_down", level=logging.WARNING, runner=self.name, reason=reason)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watch_until_ready())

    async def _watch_until_ready(self) -> None:
        while not await self._is_ready():
            await asyncio.sleep(WATCH_INTERVAL_S)
        self.down = False
        log_event("runner_up", runner=self.name)


WATCH_INTERVAL_S = 0.25
"""Pause between two probes of a runner that is down (a refused probe returns at once)."""
_GUARDS: dict[str, RunnerGuard] = {}


def runner_guard(runner: Any) -> RunnerGuard:
    """The guard of ``runner`` in this process (timings from :class:`ServeSettings`)."""
    guard = _GUARDS.get(runner.name)
    if guard is None:
        settings = ServeSettings()
        guard = RunnerGuard(
            runner,
            probe_after_s=settings.runner_probe_after_s,
            probe_timeout_s=settings.runner_probe_timeout_s,
        )
        _GUARDS[runner.name] = guard
    return guard


def runner_sessions_ignore_environment() -> bool:
    """Make BentoML's runner clients cheaper per call, without changing what they send.

    BentoML 1.4 opens the API worker's session to its runners with ``aiohttp``'s
    ``trust_env=True``, so every runner call reads the proxy variables and looks ``~/.netrc`` up
    on a thread-pool hop, and a set ``HTTP_PROXY`` could route runner traffic (local sockets or
    loopback) through a proxy: ``trust_env`` is turned off. The session also carries
    OpenTelemetry's aiohttp instrumentation, which makes a span per runner call even when
    tracing keeps no trace (BentoML's default ``tracing.sample_rate`` is unset: none kept);
    then it is left out (with tracing on it stays). Measured in one process against a live
    ``direction`` runner, API-side CPU per call: 1.63 ms as BentoML sets it up, 0.83-1.0 ms
    without ``trust_env`` (docs/BENCHMARKS.md, "Service ceiling").

    Returns False, changing nothing, if this BentoML version has no such hook (tested against
    the pinned one, so an upgrade that moves it is noticed).
    """
    try:
        from bentoml._internal.runner.runner_handle.remote import RemoteRunnerClient
    except ImportError:
        return False
    original = RemoteRunnerClient.__dict__.get("_client")
    if not isinstance(original, property) or original.fget is None:
        return False
    if getattr(original.fget, "_ignores_environment", False):
        return True
    create = original.fget

    def lean_session(self: Any) -> Any:
        session = create(self)
        session._trust_env = False
        if not tracing_keeps_traces():
            session._trace_configs = []
        return session

    lean_session._ignores_environment = True  # type: ignore[attr-defined]
    RemoteRunnerClient._client = property(lean_session)  # type: ignore[method-assign,assignment]
    return True
