"""Start-up messages: one ``ready`` line once the runners answer, and the legacy-API note.

BentoML prints ``listening on`` when the API server binds its socket, seconds before the
runners (and so ``/readyz`` or the gRPC health check) are up. The first API worker logs one
``ready`` event when every runner answers its readiness probe, with the model tag and the
address, so an operator knows when requests will be answered.

The service uses BentoML's legacy API (``bentoml.legacy.Service`` + runners) on purpose: the new
SDK has no gRPC and no runners. :func:`silence_legacy_api_warnings` drops the ~20
``BentoMLDeprecationWarning`` lines every process would print; the ``ready`` event says why once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from serving.logs import log_event

LEGACY_API_NOTE = (
    "BentoML legacy API (bentoml.legacy.Service + runners) by design: gRPC and adaptive-batching "
    "runners need it; its deprecation warnings are not printed"
)
READY_POLL_S = 0.25
READY_TIMEOUT_S = 600.0


def silence_legacy_api_warnings() -> None:
    """Ignore BentoML 1.4's deprecation warnings of the legacy API (call before importing it)."""
    warnings.filterwarnings(
        "ignore", message=r".*deprecated since BentoML v1\.4", category=DeprecationWarning
    )


def listening_address(argv: Sequence[str] = tuple(sys.argv)) -> str:
    """Where this API worker listens, from its command line: ``--host``/``--port`` (gRPC
    workers) or the socket passed as ``--fd`` (HTTP workers); ``"unknown"`` otherwise."""
    options = dict(zip(argv, [*argv[1:], ""], strict=True))
    if "--port" in options:
        return f"{options.get('--host') or '0.0.0.0'}:{options['--port']}"
    if options.get("--fd", "").isdigit():
        try:
            with socket.socket(fileno=os.dup(int(options["--fd"]))) as bound:
                host, port = bound.getsockname()[:2]
            return f"{host}:{port}"
        except OSError:
            pass
    return "unknown"


async def _runners_ready(runners: Sequence[Any]) -> bool:
    try:
        return all([await runner.runner_handle_is_ready() for runner in runners])
    except Exception:  # the runner clients are not initialised yet
        return False


async def announce_when_ready(runners: Sequence[Any], **fields: Any) -> None:
    """Log ``ready`` (with ``fields``) once every runner answers, or ``not_ready`` after
    :data:`READY_TIMEOUT_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while not await _runners_ready(runners):
        if loop.time() > deadline:
            log_event("not_ready", reason=f"runners not up after {READY_TIMEOUT_S:.0f} s")
            return
        await asyncio.sleep(READY_POLL_S)
    log_event("ready", **fields, note=LEGACY_API_NOTE)


_tasks: set[asyncio.Task[None]] = set()


def schedule_ready_announcement(runners: Sequence[Any], **fields: Any) -> None:
    """Run :func:`announce_when_ready` in the background of the current event loop."""
    task = asyncio.get_running_loop().create_task(announce_when_ready(runners, **fields))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
