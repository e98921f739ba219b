"""Adaptive batching that never holds a request while its runner is idle (issue 12, goal 5).

BentoML 1.4's runner dispatcher (``CorkDispatcher``) learns a mean wait from recent batches
and holds each new request while ``n * (newest wait + 1 ms + a) <= 0.95 x`` that mean, polling
every 1 ms, even when the runner has nothing to do. After a burst of load the learnt wait stays
high for minutes (it is the mean of the last 50 batches, refreshed every 5 s, and shrinks by
about 5 % a refresh), so a lone request then waits tens of milliseconds for company that never
comes: measured here, one client after a 32-client burst got 26 req/s with batching on against
~70 with it off. The 1 ms polling also takes the GIL from the thread that computes the batch.
BentoML 1.4.39 has no setting for either (only ``max_batch_size`` and ``max_latency_ms``).

:class:`IdleDispatcher` keeps BentoML's dispatcher (its queue, batch splitting, metrics,
``max_batch_size``, ``max_latency_ms`` and the 503 fallback) and replaces only the decision of
when to send a batch: as soon as the runner worker is free, everything queued (up to
``max_batch_size``) goes as one batch. While a batch runs, new requests queue up and form the
next one, so batches still grow with load, and the controller sleeps on a condition instead of
polling. A request still queued ``max_latency_ms`` after it arrived is answered 503, as before.
On a CPU-bound runner whose worker computes one batch at a time, waiting while the worker is
idle can only add latency: the batch would be sent no sooner, and no work overlaps the wait.

``BTC_SERVE_BATCH_DISPATCH=bentoml`` (``ServeSettings.batch_dispatch``) keeps BentoML's own
dispatcher, for comparison.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bentoml._internal.marshal.dispatcher import CorkDispatcher

logger = logging.getLogger(__name__)


class IdleDispatcher(CorkDispatcher):  # type: ignore[misc]
    """BentoML's ``CorkDispatcher``, sending a batch whenever its worker is free (module doc)."""

    @property
    def _batch_done(self) -> asyncio.Condition:
        condition = self.__dict__.get("_batch_done_condition")
        if condition is None:
            condition = self.__dict__["_batch_done_condition"] = asyncio.Condition()
        return condition

    def _expire_overdue(self) -> None:
        """Answer 503 (BentoML's fallback, through the cancelled future) to every request
        queued ``max_latency_ms`` or longer."""
        now = time.time()
        while self._queue and now - self._queue[0].enqueue_time >= self.max_latency:
            self._queue.popleft().future.cancel()

    async def controller(self) -> None:
        """Wait for a request, then for a free worker; send all that is queued as one batch."""
        while True:
            try:
                async with self._wake_event:
                    await self._wake_event.wait_for(self._queue.__len__)
                if self._sema.is_locked():
                    async with self._batch_done:
                        await self._batch_done.wait_for(lambda: not self._sema.is_locked())
                self._expire_overdue()
                if not self._queue:
                    continue
                self._sema.acquire()
                jobs = tuple(self._get_inputs())
                self._loop.create_task(self._send(jobs))
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive anything one batch does
                logger.exception("Error dispatching a batch")

    async def _send(self, jobs: tuple[Any, ...]) -> None:
        try:
            await self.outbound_call(jobs)  # releases the semaphore, whatever happens
        finally:
            async with self._batch_done:
                self._batch_done.notify_all()


def install_dispatcher(choice: str) -> None:
    """Make the runner servers of this process build their batched methods' dispatchers as
    ``choice`` says: ``idle`` (:class:`IdleDispatcher`) or ``bentoml`` (BentoML's own). Call it
    before the runner app is built (importing the service does).

    Raises:
        ValueError: ``choice`` is neither.
    """
    from bentoml._internal.server import runner_app

    dispatchers = {"idle": IdleDispatcher, "bentoml": CorkDispatcher}
    if choice not in dispatchers:
        raise ValueError(f"batch dispatch must be one of {', '.join(dispatchers)}, got {choice!r}")
    runner_app.CorkDispatcher = dispatchers[choice]  # type: ignore[misc]
